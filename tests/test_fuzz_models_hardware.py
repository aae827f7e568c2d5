"""Bad input to models, pretrained loading, hardware, timelimit and the pipeline summaries: each
case raised an AttributeError, KeyError, IndexError, a bare torch RuntimeError, an error that did
not name the argument, or was silently accepted. Now: a ValueError / TypeError naming it."""

import math

import pytest
import torch

from minicomp import hardware, models, pipeline
from minicomp.timelimit import time_limit


def _gpt(**overrides):
    config = dict(n_layer=1, n_head=2, n_embd=128, block_size=16, **overrides)
    return models.TinyGPT(models.GPTConfig(**config), seed=1)


IDX = torch.zeros(2, 5, dtype=torch.long)


def _rows():
    R = pipeline.Result
    return [R("t", "teacher", 100, 1000, 3.0, 0.5, 1.0), R("s", "distilled", 10, 100, 4.0, 0.45, 0.5)]


# ── models ────────────────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("fn", [models.count_parameters,
                                lambda m: models.accuracy(m, torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))])
def test_a_model_that_is_not_a_module_is_named(fn):
    # before: AttributeError: 'NoneType' object has no attribute 'parameters' / 'training'
    with pytest.raises(TypeError, match="model must be a torch.nn.Module.*got NoneType"):
        fn(None)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(in_features=-1), ValueError, "in_features=-1 must be >= 1"),  # before: torch RuntimeError
    (dict(in_features=0), ValueError, "in_features=0 must be >= 1"),    # before: a model of width 0
    (dict(num_classes=None), TypeError, "num_classes must be an int, got NoneType"),  # before: torch's empty()
    (dict(hidden=(32.5,)), ValueError, r"hidden=\(32.5,\) must be a non-empty sequence of positive ints"),
    (dict(dropout=None), ValueError, r"dropout=None must be a number in \[0, 1\)"),  # before: '<=' not supported
    (dict(seed="1"), TypeError, "seed must be an int"),  # before: accepted, seeded with torch's reading of "1"
])
def test_mlp_constructor_names_bad_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        models.MLP(**kwargs)


def test_cnn_and_tinygpt_constructors_name_bad_arguments():
    # before: 'not all arguments converted during string formatting', torch's empty(), or accepted
    with pytest.raises(ValueError, match="channels='8' must be a non-empty sequence"):
        models.CNN(channels="8")
    with pytest.raises(ValueError, match="num_classes=0 must be >= 1"):
        models.CNN(num_classes=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        models.TinyGPT(models.GPTConfig(n_layer=1), seed=1.5)
    with pytest.raises(ValueError, match=r"config.dropout=None must be a number in \[0, 1\)"):
        _gpt(dropout=None)
    with pytest.raises(ValueError, match="config.dropout=nan"):
        _gpt(dropout=math.nan)
    with pytest.raises(TypeError, match="config.bias='no' must be True or False"):
        _gpt(bias="no")


@pytest.mark.parametrize("model", [models.digits_mlp_student(), models.digits_cnn_student()], ids=["mlp", "cnn"])
def test_digits_input_of_another_dtype_or_device_is_named(model):
    # before: RuntimeError: mat1 and mat2 must have the same dtype (MLP), Input type (double) (CNN)
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's weights are torch.float32.*x.to\(torch.float32\)"):
        model(torch.zeros(2, 64, dtype=torch.float64))
    # before: RuntimeError: Tensor on device cpu is not on the expected device meta!
    with pytest.raises(ValueError, match=r"x is on meta but the model is on cpu; move it: x.to\('cpu'\)"):
        model(torch.zeros(2, 64, device="meta"))


def test_accuracy_refuses_fractional_labels():
    # before: 0.0, silently (no prediction equals 0.5)
    with pytest.raises(ValueError, match="y holds fractions.*integer class ids"):
        models.accuracy(models.digits_mlp_student(), torch.zeros(2, 64), torch.tensor([0.5, 1.5]))


@pytest.mark.parametrize("targets, exc, pattern", [
    (IDX.float(), TypeError, r"targets is a torch.float32 tensor; expected int64 token ids: targets.long\(\)"),
    (IDX.int(), TypeError, "targets is a torch.int32 tensor"),
    (IDX + 200, ValueError, r"targets holds ids from 200 to 200; expected ids in \[0, 96\)"),  # before: IndexError
    (IDX - 5, ValueError, "or -1 for a position to ignore"),  # before: IndexError: Target -5 is out of bounds
])
def test_tinygpt_targets_are_checked(targets, exc, pattern):
    # before: RuntimeError: expected target dtype to be Long or Byte / IndexError from cross_entropy
    with pytest.raises(exc, match=pattern):
        _gpt()(IDX, targets)


def test_tinygpt_loss_still_ignores_minus_one():
    targets = IDX.clone()
    targets[:, 0] = -1
    assert torch.isfinite(_gpt()(IDX, targets)[1])


def test_tinygpt_idx_of_uint8_is_named():
    # before: RuntimeError: Expected tensor for argument #1 'indices' to have one of ... Long, Int
    with pytest.raises(TypeError, match=r"idx is a torch.uint8 tensor; expected int64 token ids: idx.long\(\)"):
        _gpt()(IDX.to(torch.uint8))


def test_scores_refuse_true_as_a_size():
    from minicomp.data import CharCorpus

    # before: block_size=True scored windows of 1 character; max_windows=True reached torch.linspace
    with pytest.raises(ValueError, match="block_size=True must be a positive int"):
        models.perplexity(_gpt(), CharCorpus(), block_size=True)
    with pytest.raises(ValueError, match="max_windows=True must be a positive int"):
        pipeline.quality(_gpt(), CharCorpus(), max_windows=True)


# ── shipped weights ───────────────────────────────────────────────────────────────────────────
def test_weights_dir_is_named_when_it_is_not_a_folder(tmp_path):
    # before: "name='tinygpt': .../tinygpt.json is missing", as if the name were wrong; 3: a bare TypeError
    with pytest.raises(FileNotFoundError, match="weights_dir='.*nowhere' is missing; expected the folder"):
        models.load_pretrained("tinygpt", weights_dir=tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="weights_dir='.*file' is a file, not a folder"):
        models.pretrained_metadata("tinygpt", weights_dir=tmp_path / "file")
    with pytest.raises(TypeError, match="weights_dir must be a folder.*got int"):
        models.pretrained_metadata("tinygpt", weights_dir=3)


def test_damaged_weight_files_are_named(tmp_path):
    # before: IsADirectoryError, JSONDecodeError, KeyError: 'arch', SafetensorError, RuntimeError
    (tmp_path / "tinygpt.json").mkdir()
    with pytest.raises(FileNotFoundError, match=r"name='tinygpt': .*tinygpt.json is missing"):
        models.pretrained_metadata("tinygpt", weights_dir=tmp_path)
    (tmp_path / "tinygpt.json").rmdir()
    (tmp_path / "tinygpt.json").write_text("{not json")
    with pytest.raises(ValueError, match="name='tinygpt': .*tinygpt.json is not valid JSON"):
        models.pretrained_metadata("tinygpt", weights_dir=tmp_path)
    (tmp_path / "tinygpt.json").write_text("{}")
    (tmp_path / "tinygpt.safetensors").write_text("xx")
    with pytest.raises(ValueError, match="name='tinygpt': tinygpt.json has config=None"):
        models.load_pretrained("tinygpt", weights_dir=tmp_path)
    (tmp_path / "tinygpt.json").write_text((models.WEIGHTS_DIR / "tinygpt.json").read_text())
    with pytest.raises(ValueError, match="name='tinygpt': .*tinygpt.safetensors does not hold this model's weights"):
        models.load_pretrained("tinygpt", weights_dir=tmp_path)



@pytest.mark.parametrize("change, says", [
    (lambda m: m["config"].update(n_layers=4), r"does not accept \(.*n_layers"),   # a misspelt key: TypeError before
    (lambda m: m["config"].update(dropout=2.0), "does not accept"),               # a value it refuses
    (lambda m: m.update(arch=["TinyGPT"]), r"arch=\['TinyGPT'\]"),               # unhashable: TypeError before
])
def test_a_weights_config_the_model_refuses_names_the_file(tmp_path, change, says):
    import json

    meta = json.loads((models.WEIGHTS_DIR / "tinygpt.json").read_text())
    change(meta)
    (tmp_path / "tinygpt.json").write_text(json.dumps(meta))
    (tmp_path / "tinygpt.safetensors").write_text("xx")
    with pytest.raises(ValueError, match=says) as e:
        models.load_pretrained("tinygpt", weights_dir=tmp_path)
    assert "tinygpt.json" in str(e.value)


def test_ratios_and_timings_refuse_undefined_times():
    good = hardware.Timing.from_times([1e-3, 2e-3])
    for bad in ([math.nan], [1e-3, -1e-3], [math.inf]):   # before: a Timing with a NaN or negative median
        with pytest.raises(ValueError, match="times must be finite and >= 0 seconds"):
            hardware.Timing.from_times(bad)
    broken = hardware.Timing(median=math.nan, mean=math.nan, min=math.nan, times=(math.nan,), repeats=1)
    with pytest.raises(ValueError, match=r"\['b'\] have a median that is negative, NaN or inf"):   # before: {'a': nan, ...}
        hardware.ratios({"a": good, "b": broken}, "a")
    negative = hardware.Timing(median=-1e-3, mean=-1e-3, min=-1e-3, times=(-1e-3,), repeats=1)
    with pytest.raises(ValueError, match="negative, NaN or inf"):   # not "took 0 s by the clock"
        hardware.ratios({"a": good, "b": negative}, "a")


def test_load_minilm_names_a_path_that_is_not_a_model(tmp_path):
    # before: transformers' "Unrecognized model in ..." ('' loaded the current folder); 3: a hub lookup of '3'
    with pytest.raises(FileNotFoundError, match="name_or_path='.*' is a folder without modules.json or config.json"):
        models.load_minilm(tmp_path)
    with pytest.raises(ValueError, match="name_or_path='' is empty"):
        models.load_minilm("")
    with pytest.raises(TypeError, match="name_or_path must be a folder or a hub id.*got int"):
        models.load_minilm(3)


# ── hardware and timelimit ────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("call", [
    lambda: hardware.make_matmul(4, 4, 4, seed="1"),
    lambda: hardware.matmul_flops(4, 4, 4, seed=1.5, repeats=1, warmup=0),
    lambda: hardware.gemv_vs_gemm([1], 8, 8, seed=None, repeats=1, warmup=0),
], ids=["make_matmul", "matmul_flops", "gemv_vs_gemm"])
def test_matmul_seeds_are_named(call):
    # before: RuntimeError: manual_seed expected a long, but got str
    with pytest.raises(TypeError, match="seed must be an int"):
        call()


@pytest.mark.parametrize("call, pattern", [
    (lambda: hardware.measure(lambda: None, repeats=1, hold="no"), "hold='no' must be True or False"),
    (lambda: hardware.compare({"a": lambda: None}, repeats=1, flush=1), "flush=1 must be True or False"),
    (lambda: hardware.human_bytes(2000, binary="no"), "binary='no' must be True or False"),
    (lambda: hardware.model_bytes(torch.nn.Linear(2, 2), "no"), "include_buffers='no' must be True or False"),
    (lambda: models.count_parameters(torch.nn.Linear(2, 2), "no"), "trainable_only='no' must be True or False"),
])
def test_flags_refuse_strings_read_as_true(call, pattern):
    # before: accepted; a string such as "no" read as True
    with pytest.raises(TypeError, match=pattern):
        call()


def test_time_limit_alarm_must_be_a_bool():
    # before: alarm="no" read as True (use SIGALRM)
    with pytest.raises(TypeError, match="alarm='no' must be True, False or None"), time_limit(1, alarm="no"):
        pass


def test_sequences_of_the_wrong_kind_are_named():
    # before: TypeError: 'int' object is not iterable / 'function' object is not iterable, naming nothing
    with pytest.raises(TypeError, match=r"batches must be a list of batch sizes such as \[1, 8, 64\], got int 4"):
        hardware.gemv_vs_gemm(4, 8, 8, repeats=1, warmup=0)
    with pytest.raises(TypeError, match="fns must be a list of functions.*got function"):
        hardware.round_robin(lambda: None)
    # before: TypeError: unhashable type: 'list'
    with pytest.raises(ValueError, match=r"baseline=\['a'\] is not one of the names in fns"):
        hardware.compare({"a": lambda: None}, repeats=1, baseline=["a"])


def test_flush_l2_names_a_device_that_is_not_cuda():
    # before: AssertionError: Torch not compiled with CUDA enabled (or a CUDA error for 'cpu')
    with pytest.raises(ValueError, match="device=device.type='cpu'.* must be a CUDA torch.device"):
        hardware.flush_l2(torch.device("cpu"))


# ── pipeline summaries ────────────────────────────────────────────────────────────────────────
@pytest.mark.parametrize("call", [
    lambda rows: pipeline.pareto_front(rows),
    lambda rows: pipeline.comparison_table(rows, "t"),
    lambda rows: pipeline.plot_pareto(rows),
    lambda rows: pipeline.check_claims(rows, teacher="t", student="s", four_bit=["s"], combined="s"),
], ids=["pareto_front", "comparison_table", "plot_pareto", "check_claims"])
def test_rows_that_are_not_results_are_named(call):
    # before: AttributeError: 'dict' object has no attribute 'bytes' / 'name' / 'step'
    with pytest.raises(TypeError, match="rows\\[1\\] is a dict, not a Result"):
        call([_rows()[0], {"name": "s"}])
    with pytest.raises(TypeError, match=r"got a single Result: wrap it, \[row\]"):
        call(_rows()[0])


def test_format_table_names_a_malformed_table():
    table = pipeline.comparison_table(_rows(), "t")
    # before: KeyError: 0 (a dict), KeyError: 'what changes' (ragged rows), IndexError (lists)
    with pytest.raises(TypeError, match="table must be a list of dicts.*got dict"):
        pipeline.format_table(table[0])
    with pytest.raises(ValueError, match=r"table\[1\] has no \['what changes'"):
        pipeline.format_table([table[0], {"model": "x"}])
    with pytest.raises(TypeError, match="table must be a list of dicts.*got list of list"):
        pipeline.format_table([[1, 2]])


def test_plot_pareto_names_axes_that_are_not_a_pair():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    # before: TypeError: 'Axes' object is not subscriptable / IndexError: string index out of range
    with pytest.raises(TypeError, match=r"axes must be two matplotlib Axes, e.g. plt.subplots\(1, 2\)\[1\], got Axes"):
        pipeline.plot_pareto(_rows(), axes=ax)
    plt.close("all")


def test_check_claims_names_four_bit_of_the_wrong_kind():
    # before: TypeError: Value after * must be an iterable, not NoneType
    with pytest.raises(TypeError, match="four_bit must be a row name or a list of row names, got NoneType"):
        pipeline.check_claims(_rows(), teacher="t", student="s", four_bit=None, combined="s")


def test_measure_names_steps_and_timed_of_the_wrong_kind():
    # before: AttributeError: 'list' object has no attribute 'get' (after measuring); TypeError: 'int'
    # object is not iterable
    from minicomp.data import CharCorpus

    with pytest.raises(TypeError, match="steps must be a dict of name -> step.*got list"):
        pipeline.measure({"a": _gpt()}, CharCorpus(), steps=["teacher"])
    with pytest.raises(TypeError, match="timed must be a model name or a list of names.*got bool True"):
        pipeline.measure({"a": _gpt()}, CharCorpus(), timed=True)


def test_pretrained_training_sizes_are_named():
    from minicomp import pretrained

    # before: ZeroDivisionError (division by zero; integer modulo by zero), or torch's "total_steps"
    with pytest.raises(ValueError, match="batch_size=0 must be >= 1"):
        pretrained.train_digits_teacher("mlp", batch_size=0)
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        pretrained.train_digits_teacher("mlp", epochs=0)
    with pytest.raises(ValueError, match="eval_interval=0 must be >= 1"):
        pretrained.train_tinygpt(eval_interval=0)


def test_accuracy_names_labels_the_model_cannot_predict():
    """Labels 0..10 for a 10-class model (or -1 for an unlabelled row) silently counted as wrong."""
    from minicomp import models as m

    model, x = m.digits_mlp_student(), torch.randn(6, 64)
    with pytest.raises(ValueError, match=r"y holds class ids from 0 to 10, but the model predicts 10 classes, 0 to 9"):
        m.accuracy(model, x, torch.tensor([0, 1, 2, 3, 4, 10]))
    with pytest.raises(ValueError, match="from -1 to 3"):
        m.accuracy(model, x, torch.tensor([-1, 1, 2, 3, 0, 0]))
    assert 0 <= m.accuracy(model, x, torch.tensor([0, 1, 2, 3, 4, 9])) <= 1


def test_generate_refuses_a_bool_temperature():
    """temperature=True was read as 1 (sampling), False as 0 (greedy)."""
    from minicomp import models as m

    gpt = m.TinyGPT(m.GPTConfig(n_layer=1, n_head=2, n_embd=128, block_size=16), seed=1)
    with pytest.raises(ValueError, match="temperature=True"):
        gpt.generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=True)
