"""Everything that scores a model: metrics, benchmark readers, evaluation decoding, held-out
retrieval during pretraining, Ray Data embedding extraction, retrieval and linear probes."""
