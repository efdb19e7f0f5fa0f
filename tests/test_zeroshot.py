"""`vatt eval zero-shot`: class names through prompt templates and the text tower against video
(UCF101-, Kinetics-style) and audio (ESC-50-style, through the video-audio space) views of the
sample corpus; the pretrained debug model against an untrained one and chance; the pieces
without a cluster; one-line usage errors; the export's model card carrying the figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.cli import main
from training.eval.zeroshot import (
    TEMPLATE_SETS,
    audio_to_video_text,
    class_embeddings,
    class_words,
    classification_report,
    load_templates,
    out_of_vocabulary,
    view_logits,
)
from training.model import VATT, make_config

# ---------------------------------------------------------------------------------------------
# No cluster
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, words",
    [
        ("ApplyEyeMakeup", "apply eye makeup"),  # UCF101
        ("YoYo", "yo yo"),
        ("CarRepair", "car repair"),
        ("brush_hair", "brush hair"),  # HMDB51
        ("chirping_birds", "chirping birds"),  # ESC-50
        ("playing guitar", "playing guitar"),  # Kinetics
        ("passing American football (in game)", "passing american football (in game)"),
    ],
)
def test_class_names_become_words(name, words):
    assert class_words(name) == words


def test_templates_built_in_and_from_a_file(tmp_path):
    assert load_templates("video") == TEMPLATE_SETS["video"]
    assert all(t.count("{}") == 1 for s in TEMPLATE_SETS.values() for t in s)
    good = tmp_path / "t.txt"
    good.write_text("# my prompts\n\na clip of {}.\n  {} in a video  \n")
    assert load_templates(str(good)) == ("a clip of {}.", "{} in a video")
    bad = tmp_path / "bad.txt"
    bad.write_text("a clip of {}.\nno placeholder here\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: a template needs exactly one"):
        load_templates(str(bad))
    with pytest.raises(ValueError, match="not a file nor one of video, audio, asr, name"):
        load_templates(str(tmp_path / "missing.txt"))


def test_classification_report_by_hand():
    # 4 items, 3 classes; item 3 ties its label with another class: it counts as wrong.
    logits = torch.tensor(
        [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.5, 0.0]]
    )  # fmt: skip
    labels = torch.tensor([0, 1, 2, 1])
    r = classification_report(logits, labels, ["a", "b", "c"])
    assert r["top1"] == 0.5 and r["top5"] == 1.0  # top-5 caps at 3 classes
    assert r["chance_top1"] == pytest.approx(1 / 3) and r["chance_top5"] == 1.0
    assert r["per_class"] == {
        "a": {"accuracy": 1.0, "n": 1},
        "b": {"accuracy": 0.5, "n": 2},
        "c": {"accuracy": 0.0, "n": 1},
    }
    assert r["mean_class_accuracy"] == pytest.approx(0.5)
    # rows: true class, columns: argmax (the tie goes to the first class)
    assert r["confusion"] == [[1, 0, 0], [1, 1, 0], [1, 0, 0]]


def test_view_logits_average_the_valid_views_only():
    classes = torch.eye(2)  # (C=2, d=2), unit vectors
    views = np.array([[[3.0, 0.0], [0.0, 5.0], [9.0, 9.0]]], dtype=np.float32)  # (1, V=3, 2)
    valid = np.array([[True, True, False]])
    logits = view_logits(views, valid, classes)
    torch.testing.assert_close(logits, torch.tensor([[0.5, 0.5]]))  # cosines averaged


def test_audio_reaches_the_video_text_space_through_the_video_head():
    torch.manual_seed(0)
    model = VATT(make_config("debug")).eval()
    audio = torch.rand(3, 6400) * 2 - 1
    with torch.no_grad():
        audio_va = model.encode_audio(audio)["audio_va"]  # (3, d_va)
        expected = model.video_head.to_vt(audio_va)  # the map video_va -> video_vt
    got = audio_to_video_text(model, audio_va.numpy()[:, None].repeat(2, axis=1))  # (3, 2, d)
    assert got.shape == (3, 2, model.cfg.head.d_vt)
    torch.testing.assert_close(torch.from_numpy(got[:, 1]), expected)


def test_class_vectors_ensemble_the_prompts():
    from preprocessing.vocab import build_tokenizer
    from training.eval.heldout import embed_texts, tokenize_sentences

    torch.manual_seed(0)
    model = VATT(make_config("debug")).eval()
    tok = build_tokenizer(["now we knead the dough", "a video of guitar strings"])
    templates = ("{}", "now we {}")
    got = class_embeddings(model, tok, ["knead dough", "guitar"], templates)
    prompts = ["knead dough", "now we knead dough", "guitar", "now we guitar"]
    each = embed_texts(model, tokenize_sentences(tok, prompts, 16, 4096))  # (4, d), unit
    expected = F.normalize(each.reshape(2, 2, -1).mean(dim=1), dim=-1)
    torch.testing.assert_close(got, expected)
    assert out_of_vocabulary(tok, ["knead dough", "apply eye makeup"]) == {
        "apply eye makeup": ["apply", "eye", "makeup"]
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "kinetics", "--videos", "."], "--kinetics-csv is required"),
        (["--dataset", "ucf101", "--splits-dir", "/nowhere", "--videos", "."], "/nowhere: not"),
        (["--dataset", "esc50", "--esc50-csv", "E", "--audio", ".", "--crops", "3"], "--crops 3"),
        (["--dataset", "esc50", "--esc50-csv", "E", "--audio", ".", "--templates", "T"], "T.txt:1"),
        (["--dataset", "esc50", "--esc50-csv", "E", "--audio", "A", "--folds", "9"], "no clips"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message, sample_shards, tmp_path, capsys):
    (tmp_path / "T.txt").write_text("the sound of it\n")
    paths = {"E": str(sample_shards["esc50_csv"]), "A": str(sample_shards["esc50_audio"])}
    paths["T"] = str(tmp_path / "T.txt")
    args = [paths.get(a, a) for a in args]
    argv = ["eval", "zero-shot", "--model", str(tmp_path), "--out", str(tmp_path / "o"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("vatt eval: error:") and message in err, err


# ---------------------------------------------------------------------------------------------
# Ray Data extraction with the pretrained debug model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole_ucf_split(sample_shards, tmp_path_factory) -> Path:
    """The UCF101-style split files with every clip in the test list: zero-shot trains on
    nothing, so all 24 clips (8 classes x 3 groups) can be scored."""
    src = sample_shards["ucf101_root"] / "splits"
    splits = tmp_path_factory.mktemp("ucf_all")
    shutil.copy(src / "classInd.txt", splits)
    train = [line.split()[0] for line in (src / "trainlist01.txt").read_text().splitlines()]
    test = (src / "testlist01.txt").read_text().split()
    (splits / "trainlist01.txt").write_text((src / "trainlist01.txt").read_text())
    (splits / "testlist01.txt").write_text("\r\n".join(sorted(train + test)) + "\r\n")
    return splits


def zero_shot(out: Path, *args) -> dict:
    """Run `vatt eval zero-shot` in this process; its report with the printed text."""
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["eval", "zero-shot", "--out", str(out), "--compare-untrained", *args])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    by_label = {m["label"]: m for m in report["models"]}
    return report | {"by_label": by_label, "printed": printed.getvalue(), "out": out}


@pytest.fixture(scope="module")
def reports(trained_debug, sample_shards, whole_ucf_split, ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("zeroshot")
    model = ["--model", str(trained_debug["export"]), "--templates", "asr"]
    return {
        "ucf101": zero_shot(
            out / "ucf101", *model, "--dataset", "ucf101", "--splits-dir", str(whole_ucf_split),
            "--videos", str(sample_shards["ucf101_root"] / "videos"),
        ),
        # Default views for Kinetics: 4 clips x 3 crops. The training CSV's 16 clips are scored
        # (zero-shot trains on nothing; the validation CSV has one clip per class).
        "kinetics": zero_shot(
            out / "kinetics", *model, "--dataset", "kinetics",
            "--kinetics-csv", str(sample_shards["kinetics_train_csv"]),
            "--videos", str(sample_shards["kinetics_videos"]),
        ),
        "esc50": zero_shot(
            out / "esc50", *model, "--dataset", "esc50",
            "--esc50-csv", str(sample_shards["esc50_csv"]),
            "--audio", str(sample_shards["esc50_audio"]),
        ),
    }  # fmt: skip


@pytest.mark.parametrize("dataset, per_class", [("ucf101", 3), ("kinetics", 2)])
def test_video_zero_shot_beats_chance_and_the_untrained_model(reports, dataset, per_class):
    report = reports[dataset]
    trained, untrained = report["by_label"]["trained"], report["by_label"]["untrained"]
    items = 8 * per_class
    assert trained["num_scored"] == trained["num_items"] == items and trained["errors"] == []
    assert trained["space"] == "video-text: z_v,vt"
    assert trained["chance_top1"] == 1 / 8 and len(trained["classes"]) == 8
    assert trained["top1"] > untrained["top1"] and trained["top1"] >= 2 * trained["chance_top1"]
    assert trained["out_of_vocabulary"] == {}  # every class name is a caption word
    confusion = np.array(trained["confusion"])
    assert confusion.sum() == items and (confusion.sum(axis=1) == per_class).all()
    assert np.trace(confusion) == round(trained["top1"] * items)
    assert trained["top1"] <= trained["top5"] <= 1.0
    assert trained["views"] == (
        {"clips": 4, "crops": 3} if dataset == "kinetics" else {"clips": 4, "crops": 1}
    )


def test_audio_zero_shot_goes_through_the_video_audio_space(reports):
    report = reports["esc50"]
    trained, untrained = report["by_label"]["trained"], report["by_label"]["untrained"]
    assert report["modality"] == "audio" and "g_v->vt(z_a,va)" in trained["space"]
    assert trained["num_scored"] == 40 and trained["views"] == {"clips": 4, "crops": 1}
    assert trained["templates"] == list(TEMPLATE_SETS["asr"])
    assert trained["class_texts"][trained["classes"].index("car_repair")] == "car repair"
    for m in (trained, untrained):
        assert 0.0 <= m["top1"] <= m["top5"] <= 1.0
        assert sum(v["n"] for v in m["per_class"].values()) == 40


def test_printed_table_and_confusion_png(reports):
    for dataset, report in reports.items():
        printed, trained = report["printed"], report["by_label"]["trained"]
        assert f"{dataset} zero-shot" in printed and "chance" in printed
        assert f"trained    {trained['top1']:.3f}" in printed
        views = trained["views"]
        assert f"{views['clips']} clips x {views['crops']} crops" in printed
        assert all(c in printed for c in trained["classes"])  # per-class rows
        assert (report["out"] / "confusion.png").stat().st_size > 10_000


def test_export_model_card_carries_the_measured_figures(trained_debug, reports, tmp_path):
    """`vatt export --eval` writes the zero-shot figures into the model card, and the folder
    loads with torch + safetensors + training.model only (Ray, DeepSpeed, tokenizers blocked)."""
    import subprocess
    import sys

    ucf = reports["ucf101"]["out"] / "report.json"
    out = tmp_path / "export"
    assert main(["export", str(trained_debug["run"]), str(out), "--eval", str(ucf)]) == 0
    card = (out / "README.md").read_text()
    trained = reports["ucf101"]["by_label"]["trained"]
    assert "| ucf101 | zero-shot top-1 | 24 |" in card
    assert f"**{trained['top1']:.3f}**" in card
    assert "| preset | debug |" in card and "from_pretrained" in card
    config = json.loads((out / "config.json").read_text())
    assert config["training_config"]["preset"] == "debug"
    script = (
        "import sys\n"
        "for name in ('ray', 'deepspeed', 'tokenizers'):\n"
        "    sys.modules[name] = None  # any import of them fails\n"
        "import torch\n"
        "from training.export import from_pretrained\n"
        f"model = from_pretrained({str(out)!r})\n"
        "x = torch.zeros(1, 8, 64, 64, 3)\n"
        "print(model.training, model.encode_video(x)['video_vt'].shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "torch.Size([1,", "32])"]
