"""The study command (python -m anse_lib study) and its metrics: behaviour, resume, refusal, bad input,
two ranks equal to one, and notebook 05's analysis on a table it made from a real diffusers layout."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from anse_lib import AnseConfig, select_noise
from anse_lib.__main__ import main
from anse_lib.metrics import ClipScore, SubjectConsistency, TemporalFlickering, check_metrics, consecutive_and_first
from anse_lib.studies.selector_study import Selector, gains
from anse_lib.studies.selectors import attention_scores
from anse_lib.toyworld import load_toy_pipeline

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a big red circle moving left", "a small blue square moving right"]


def run(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n")
    return path


@pytest.fixture(scope="module")
def toy_study(prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "toy"
    assert main(["study", "--model", "toy", "--prompts", str(prompts_file), "--seeds", "2", "--out", str(out),
                 "--metrics", "toybench,temporal_flickering", "--save-videos", "--no-progress"]) == 0
    return out


# --- metrics -------------------------------------------------------------------------------------

def test_temporal_flickering_follows_vbench():
    still = np.full((5, 8, 8, 3), 0.3)
    assert TemporalFlickering()(still, "")["temporal_flickering"] == 1.0
    blink = np.stack([np.zeros((8, 8, 3)), np.ones((8, 8, 3))] * 2)
    assert TemporalFlickering()(blink, "")["temporal_flickering"] == 0.0
    half = np.stack([np.zeros((8, 8, 3)), np.ones((8, 8, 3))])
    half[1, :4] = 0  # half the pixels change by 255: MAE 127.5
    assert TemporalFlickering()(half, "")["temporal_flickering"] == pytest.approx(0.5)


def test_subject_consistency_formula():
    same = torch.ones(4, 3)
    assert consecutive_and_first(same) == pytest.approx(1.0)
    f = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 0]])  # frame 1 orthogonal to 0; frame 2 equals frame 0
    # frame 1: (0 + 0) / 2; frame 2: (cos(f1, f2) = 0 + cos(f0, f2) = 1) / 2
    assert consecutive_and_first(f) == pytest.approx(0.25)
    assert consecutive_and_first(-same[:2]) == pytest.approx(1.0)
    assert consecutive_and_first(torch.tensor([[1.0, 0], [-1.0, 0]])) == 0.0  # negative cosines count as 0


def _tiny_vit(folder):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=16, patch_size=8)).save_pretrained(folder)


def test_subject_consistency_on_a_vit(tmp_path):
    _tiny_vit(tmp_path / "dino")
    metric = SubjectConsistency(tmp_path / "dino")
    still = np.broadcast_to(np.random.default_rng(0).random((1, 24, 24, 3)), (6, 24, 24, 3))
    assert metric(still, "")["subject_consistency"] == pytest.approx(1.0, abs=1e-6)
    changing = np.random.default_rng(1).random((6, 24, 24, 3))
    assert metric(changing, "")["subject_consistency"] < 0.999


def _clip_tokenizer(words):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", 1),
                                                                                                 ("<eos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def _trained_tiny_clip(folder, steps=40):
    """A tiny CLIP trained for a few steps to pair red frames with 'red' and blue frames with 'blue'."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    from anse_lib.metrics import OPENAI_CLIP, _normalise, _resize_crop, _tensor

    tok = _clip_tokenizer(["red", "blue", "a", "video"])
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=CLIPTextConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                num_attention_heads=2, max_position_embeddings=8, eos_token_id=2,
                                                bos_token_id=1, pad_token_id=0),
                     vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, image_size=16, patch_size=8),
                     projection_dim=8)
    model = CLIPModel(cfg)
    red, blue = np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3))
    red[..., 0], blue[..., 2] = 1, 1
    pixels = _normalise(_resize_crop(_tensor(np.concatenate([red, blue])), 16, crop=True), OPENAI_CLIP)
    text = tok(["a red video", "a blue video"], padding=True, return_tensors="pt")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels,
                     return_loss=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return red, blue


def test_clip_score_prefers_the_matching_text(tmp_path):
    red, blue = _trained_tiny_clip(tmp_path / "clip")
    metric = ClipScore(tmp_path / "clip")
    red_video = np.repeat(red, 4, axis=0)
    match, other = metric(red_video, "a red video")["clip_score"], metric(red_video, "a blue video")["clip_score"]
    assert -1 <= other < match <= 1
    blue_video = np.repeat(blue, 4, axis=0)
    assert metric(blue_video, "a blue video")["clip_score"] > metric(blue_video, "a red video")["clip_score"]


def test_check_metrics_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown metric 'fvd'"):
        check_metrics(["fvd"], None, toy=True)
    with pytest.raises(ValueError, match="toy-world prompts only"):
        check_metrics(["toybench"], None, toy=False)
    with pytest.raises(ValueError, match="needs weights: give --metric-models"):
        check_metrics(["clip"], None, toy=False)
    with pytest.raises(ValueError, match="not found under --metric-models"):
        check_metrics(["clip"], tmp_path, toy=False)
    _tiny_vit(tmp_path / "dino")
    assert check_metrics(["subject_consistency", "temporal_flickering"], tmp_path, toy=False) == {
        "subject_consistency": tmp_path / "dino", "temporal_flickering": None}


# --- the command on the toy model ------------------------------------------------------------------

def test_study_rows_match_the_method(toy_study):
    table = pd.read_csv(toy_study / "study.csv")
    meta = json.loads((toy_study / "study.json").read_text())
    assert meta["complete"] and meta["rows"] == 4 and meta["pipeline"] == "ToyVideoPipeline"
    assert list(table.seed) == [0, 1, 0, 1] and list(table.prompt) == [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2
    pipe = load_toy_pipeline()
    config = AnseConfig.from_dict(meta["config"])
    assert config.depth == 3  # the toy model folder's calibrated d*
    for i, prompt in enumerate(PROMPTS):
        rows = table[table.prompt_index == i]
        sel = select_noise(pipe, prompt, config, seeds=[0, 1])
        np.testing.assert_allclose(rows.bansa, sel.scores.bansa, rtol=1e-6)  # the score selection uses
        base = attention_scores(pipe, prompt, [0, 1])  # notebook 05's baselines, layer by layer
        for col in ("entropy_00", "collision_02", "kept_mass_01"):
            np.testing.assert_allclose(rows[col], base[col], rtol=1e-5)
    assert {"toybench_semantic", "toybench_quality", "temporal_flickering", "layer_03"} <= set(table.columns)


def test_study_writes_vbench_named_videos(toy_study):
    import imageio.v2 as imageio

    names = sorted(p.name for p in (toy_study / "videos").iterdir())
    assert names == sorted(f"{p}-{s}.mp4" for p in PROMPTS for s in (0, 1))
    frames = imageio.mimread(toy_study / "videos" / f"{PROMPTS[0]}-0.mp4")
    assert len(frames) == 8 and frames[0].shape == (16, 16, 3)


def test_study_resumes_and_refuses_another_setup(toy_study, prompts_file, capsys, tmp_path):
    out = tmp_path / "copy"
    import shutil

    shutil.copytree(toy_study, out)
    before = (out / "study.csv").read_bytes()
    argv = ["study", "--model", "toy", "--prompts", str(prompts_file), "--seeds", "2", "--out", str(out),
            "--metrics", "toybench,temporal_flickering", "--save-videos", "--no-progress"]
    code, res = run(argv, capsys)
    assert code == 0 and "nothing to do" in res.out
    # an interrupted run: one shard and the merged table gone -> only that prompt is redone
    (out / "shards" / "prompt-00001.csv").unlink()
    (out / "study.csv").unlink()
    meta = json.loads((out / "study.json").read_text())
    (out / "study.json").write_text(json.dumps(dict(meta, complete=False)))
    shard0 = (out / "shards" / "prompt-00000.json").stat().st_mtime_ns
    code, res = run(argv, capsys)
    assert code == 0 and (out / "study.csv").read_bytes() == before
    assert (out / "shards" / "prompt-00000.json").stat().st_mtime_ns == shard0
    code, res = run(argv[:-1] + ["--layers", "all", "--no-progress"], capsys)  # another config: refused
    assert code == 2 and res.err.count("\n") == 1 and res.err.startswith("error: ") and "config" in res.err
    code, res = run(argv + ["--batch-size", "1"], capsys)  # memory only: the same study
    assert code == 0 and "nothing to do" in res.out
    assert len(json.loads((out / "study.json").read_text())["runs"]) == 2  # the first run and the resume
    for changed, field in ((["--seeds", "3"], "seeds"), (["--metrics", "toybench"], "metrics"),
                           (["--model", str(ROOT / "data" / "toy_model_sd_schedule")], "model_hash")):
        flags = dict(zip(argv[1::2], argv[2::2]))
        flags.update(dict(zip(changed[::2], changed[1::2])))
        other = ["study", *[x for kv in flags.items() for x in kv if x not in ("--save-videos", "--no-progress")],
                 "--no-progress"]
        code, res = run(other, capsys)
        assert code == 2 and field in res.err, (field, res.err)


@pytest.fixture(scope="module")
def tiny_cogvideox(tmp_path_factory):
    from anse_lib.tiny_pipelines import save_tiny_cogvideox

    folder = tmp_path_factory.mktemp("ckpt") / "tiny-cogvideox"
    kwargs = save_tiny_cogvideox(folder, " ".join(PROMPTS).split())
    return folder, kwargs


BAD = [
    (["--metrics", "fvd"], "unknown metric 'fvd'"),
    (["--prompts", "/nonexistent/prompts.txt"], "no such file"),
    (["--prompts", "EMPTY"], "holds no prompt"),
    (["--metrics", "clip"], "needs weights"),
    (["--metrics", "clip", "--metric-models", "/nonexistent"], "is not a folder"),
    (["--metrics", "clip", "--metric-models", "TMP"], "not found under --metric-models"),
    (["--model", "CKPT", "--metrics", "toybench"], "toy-world prompts only"),
    (["--model", "TMP"], "not a diffusers pipeline folder"),
    (["--model", "/nonexistent/model"], "is not a folder"),
    (["--height", "64"], "the toy model makes 8 frames of 16 x 16 only"),
    (["--out", "JUNK"], "is a file; give a folder"),
    (["--prompts", "TWICE", "--save-videos", "yes"], "more than once"),
    (["--prompts", "UNKNOWN_WORD"], "unknown word"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[m for _, m in BAD])
def test_study_bad_input_is_one_error_line(extra, message, prompts_file, tiny_cogvideox, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "unknown.txt").write_text("a big purple circle moving left\n")
    (tmp_path / "junk.txt").write_text("not a model")
    (tmp_path / "twice.txt").write_text(f"{PROMPTS[0]}\n{PROMPTS[1]}\n{PROMPTS[0]}\n")
    swap = {"EMPTY": str(tmp_path / "empty.txt"), "TMP": str(tmp_path), "CKPT": str(tiny_cogvideox[0]),
            "UNKNOWN_WORD": str(tmp_path / "unknown.txt"), "JUNK": str(tmp_path / "junk.txt"),
            "TWICE": str(tmp_path / "twice.txt")}
    args = {"--model": "toy", "--prompts": str(prompts_file), "--seeds": "2", "--out": str(tmp_path / "out")}
    flags = []
    for flag, value in zip(extra[::2], extra[1::2]):
        args.pop(flag, None)
        flags += [flag] if value == "yes" else [flag, swap.get(value, value)]
    argv = ["study", *[x for kv in args.items() for x in kv], *flags, "--no-progress"]
    code, res = run(argv, capsys)
    assert code == 2, res
    assert res.err.count("\n") == 1 and res.err.startswith("error: ") and message in res.err, res.err
    assert not (tmp_path / "out").exists()  # nothing written (every check runs before any work)


def test_study_on_a_real_layout_feeds_the_analysis(tiny_cogvideox, tmp_path, capsys):
    folder, kw = tiny_cogvideox
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS))
    out = tmp_path / "study"
    code, res = run(["study", "--model", str(folder), "--prompts", str(prompts), "--seeds", "3", "--out", str(out),
                     "--steps", str(kw["num_inference_steps"]), "--height", "32", "--width", "32", "--num-frames", "9",
                     "--no-progress"], capsys)
    assert code == 0, res.err
    table = pd.read_csv(out / "study.csv")
    meta = json.loads((out / "study.json").read_text())
    assert meta["pipeline"] == "CogVideoXPipeline" and len(meta["model_hash"]) == 64
    assert {"bansa", "layer_00", "layer_01", "entropy", "temporal_flickering"} <= set(table.columns)
    res = gains(table, [Selector("ANSE", "bansa"), Selector("entropy", "entropy", "max", family="baseline")], m=3,
                targets=("temporal_flickering",))
    assert list(res.selector) == ["ANSE", "entropy"] and res.prompts.eq(2).all()
    # m = all seeds: the pick is fixed, so the gain is exactly the pick minus the prompt's mean
    picked = table.loc[table.groupby("prompt_index").bansa.idxmin()].temporal_flickering.to_numpy()
    mean = table.groupby("prompt_index").temporal_flickering.mean().to_numpy()
    assert res.gain.iloc[0] == pytest.approx((picked - mean).mean())


def test_two_ranks_equal_one(prompts_file, tmp_path):
    """torchrun with two gloo ranks splits the prompts and merges to the same bytes as one process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the same arithmetic in both runs
    common = ["-m", "anse_lib", "study", "--model", "toy", "--prompts", str(prompts_file), "--seeds", "2",
              "--metrics", "toybench", "--no-progress"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], env=env, check=True, cwd=ROOT)
    subprocess.run([torchrun, "--nproc_per_node", "2", *common, "--out", str(tmp_path / "two")], env=env,
                   check=True, cwd=ROOT, capture_output=True)
    assert (tmp_path / "one" / "study.csv").read_bytes() == (tmp_path / "two" / "study.csv").read_bytes()
    ranks = {json.loads(p.read_text())["rank"] for p in (tmp_path / "two" / "shards").glob("*.json")}
    assert ranks == {0, 1}


def test_select_noise_batches_a_text_prompt_on_cogvideox(tiny_cogvideox):
    """CogVideoXPipeline ignores num_videos_per_prompt: the candidates' batch is one prompt per seed."""
    from diffusers import DiffusionPipeline

    folder, kw = tiny_cogvideox
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    together = select_noise(pipe, PROMPTS[0], AnseConfig(), seeds=[0, 1, 2], **kw)
    one_by_one = select_noise(pipe, PROMPTS[0], AnseConfig(batch_size=1), seeds=[0, 1, 2], **kw)
    np.testing.assert_allclose(together.scores.bansa, one_by_one.scores.bansa, rtol=1e-5)
    assert len(set(together.scores.bansa.round(9))) == 3  # three different noises
