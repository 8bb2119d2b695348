"""The command line: bad input is one `error:` line and exit status 2, never a traceback."""
import pytest

from anse_lib.__main__ import main


@pytest.mark.parametrize("argv, says", [
    (["select", "--prompt", "a purple circle moving left"], "unknown word 'purple'"),
    (["select", "--prompt", "a red circle moving left", "-k", "1"], "num_masks (K) must be an integer >= 2"),
    (["select", "--prompt", "a red circle moving left", "--drop-prob", "1.5"], "drop_prob"),
    (["select", "--prompt", "a red circle moving left", "--layers", "9"], "depth=9 (score layers 1..d)"),
    (["select", "--prompt", "a red circle moving left", "--device", "cuda"], "no CUDA device is available"),
    (["select", "--prompt", "a red circle moving left", "--device", "tpu9"], "--device 'tpu9' is not a torch device"),
    (["select", "--prompt", "a red circle moving left", "--dtype", "int8"], "invalid choice: 'int8'"),
    (["select", "--prompt", "a red circle moving left", "--config", "/no/such.json"], "no anse_config.json"),
    (["select", "--prompt", "a red circle moving left", "--candidates", "0"], "--candidates takes a whole number"),
    (["select", "--prompt", "a red circle moving left", "--model", "/no/such/folder"], "is not a folder"),
    (["select"], "--prompt"),
    (["demo", "--model", "/no/such/folder"], "is not a folder"),
    (["demo", "--model", "anse_lib"], "is not a toy model folder"),
])
def test_bad_input_is_one_error_line(argv, says, capsys, tmp_path):
    try:
        code = main([argv[0], "--figures", str(tmp_path), *argv[1:]])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not list(tmp_path.iterdir()), "nothing is written on bad input"


@pytest.mark.parametrize("layers, says, scored", [
    ([], "scoring layers 1..3 of 4, the calibrated d*", ["layer_00", "layer_01", "layer_02"]),
    (["--layers", "all"], "scoring all layers (--layers all)", ["layer_00", "layer_01", "layer_02", "layer_03"]),
])
def test_select_defaults_to_the_calibrated_depth_of_the_toy_model(layers, says, scored, capsys, tmp_path):
    code = main(["select", "--figures", str(tmp_path), "--prompt", "a red circle moving left", "--candidates", "2",
                 "--steps", "2", *layers])
    out = capsys.readouterr().out
    assert code == 0 and says in out
    header = next(line for line in out.splitlines() if "bansa" in line)
    assert [c for c in header.split() if c.startswith("layer_")] == scored


def test_select_reads_a_config_file_and_flags_override_it(capsys, tmp_path):
    from anse_lib import AnseConfig, BansaConfig

    AnseConfig(num_candidates=2, depth=2, bansa=BansaConfig(num_masks=3)).save_pretrained(tmp_path)
    code = main(["select", "--figures", str(tmp_path), "--prompt", "a red circle moving left", "--steps", "2",
                 "--config", str(tmp_path / "anse_config.json"), "--layers", "1"])
    out = capsys.readouterr().out
    assert code == 0 and f"settings from {tmp_path / 'anse_config.json'}" in out
    header = next(line for line in out.splitlines() if "bansa" in line)
    assert [c for c in header.split() if c.startswith("layer_")] == ["layer_00"]
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 2  # M from the file
