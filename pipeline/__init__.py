"""The `vatt` application: CLI, configs, job orchestration. The only package that imports every stage."""
