"""Suites: the shipped TOML files, validation errors that name the key, expansion, flags."""

import textwrap
from pathlib import Path

import pytest

from wkvbench.harness import plan as P
from wkvbench.harness import suite as S

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name = "t"
[run]
device = "cpu"
budget_s = 0.1
[[group]]
op = "bi_wkv7"
models = ["A-RWKV-T"]
tokens = [256, 64]
"""


def write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.mark.parametrize("name", ["smoke", "paper", "scaling"])
def test_shipped_suites_validate(name):
    suite = S.load_suite(ROOT / "suites" / f"{name}.toml")
    assert suite.name == name
    ops_ = {g.op for g in suite.groups}
    assert ops_ - {"network"} == {"bi_wkv7", "attention", "bi_selective_scan"}
    assert ("network" in ops_) == (name in ("smoke", "paper"))
    assert P.expand_cases(suite, "cpu")


def test_smoke_is_cpu_float32_and_tiny():
    suite = S.load_suite(ROOT / "suites" / "smoke.toml")
    assert suite.run.device == "cpu"
    cases = P.expand_cases(suite, "cpu")
    assert all(c.dtype == "float32" and c.batch == 1 for c in cases)
    assert all(c.tokens <= 256 for c in cases if c.op != "network")
    assert {(c.model, c.seconds) for c in cases if c.op == "network" and c.mode == "fwd"} == {
        (m, s) for m in ("A-RWKV-T", "AST-B", "AuM-T") for s in (1.28, 2.56)
    }
    # one tiny network training cell
    assert [(c.model, c.seconds) for c in cases if c.op == "network" and c.mode == "fwd_bwd"] == [("A-RWKV-T", 0.32)]


def test_paper_seconds_become_tokens_per_family():
    suite = S.load_suite(ROOT / "suites" / "paper.toml")
    cases = P.expand_cases(suite, "cuda")
    tok = {(c.model, c.seconds): c.tokens for c in cases if c.batch == 1}
    # docs/spec.md section 6: 10.24 s = 512 A-RWKV tokens = 1214 AST tokens; 328 s = 16,400 A-RWKV tokens
    assert tok[("A-RWKV-B", 10.24)] == 512
    assert tok[("AST-B", 10.24)] == 1214
    assert tok[("A-RWKV-T", 328.0)] == 16400
    assert tok[("AuM-B", 10.24)] == 513  # + class token
    assert {c.batch for c in cases} == {1, 8}
    assert {c.dtype for c in cases if c.op not in ("attention", "network") or c.family != "ast"} == {"bfloat16"}
    # attention also runs AST eager as written in float16 (bf16 eager misses the bf16 bar)
    assert {c.dtype for c in cases if c.op == "attention"} == {"bfloat16", "float16"}
    # whole networks: A-RWKV-T/S/B, AST-B (and its eager fp16), AuM-T/S/B, 10.24 to 327.68 s, checked at 1024 tokens
    net = [c for c in cases if c.op == "network"]
    assert {c.model for c in net} == {"A-RWKV-T", "A-RWKV-S", "A-RWKV-B", "AST-B", "AuM-T", "AuM-S", "AuM-B"}
    assert {c.seconds for c in net} == {10.24, 20.48, 40.96, 81.92, 163.84, 327.68}
    assert {c.dtype for c in net if c.family == "ast"} == {"bfloat16", "float16"}
    assert all(c.check_tokens == 1024 for c in net if c.tokens > 1024)
    assert all(c.check_tokens is None for c in cases if c.op != "network")


def test_expansion_order_dedupe_and_seed(tmp_path):
    suite = S.load_suite(write(tmp_path, GOOD + "\n[[group]]\nop = 'bi_wkv7'\nmodels = ['A-RWKV-T']\ntokens = [64]\n"))
    cases = P.expand_cases(suite, "cpu")
    assert [c.tokens for c in cases] == [64, 256]  # sorted ascending, the duplicate 64 dropped
    c = cases[0]
    assert c.shape == {"B": 1, "T": 64, "H": 3, "N": 64}
    assert c.key("x") == ("bi_wkv7", "x", "A-RWKV-T", 1, 64, "float32", "cpu", "realistic", "fwd", "pure", "none")
    assert c.seconds == pytest.approx(1.28)  # 64 tokens = 8 patches of 16 frames... = 1.28 s
    assert c.seed == P.case_seed(0, c.case_id) and c.seed != cases[1].seed


def test_check_max_tokens_marks_long_cases(tmp_path):
    suite = S.load_suite(write(tmp_path, GOOD.replace("budget_s = 0.1", "check_max_tokens = 128")))
    cases = P.expand_cases(suite, "cpu")
    assert [(c.tokens, c.check_tokens) for c in cases] == [(64, None), (256, 128)]


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s + "\nbogus = 1\n", "bogus: unknown key"),
        (lambda s: s.replace("budget_s = 0.1", "budjet_s = 0.1"), "run.budjet_s: unknown key"),
        (lambda s: s.replace("budget_s = 0.1", "budget_s = -1"), "run.budget_s"),
        (lambda s: s.replace('device = "cpu"', 'device = "tpu"'), "run.device"),
        (lambda s: s.replace("budget_s = 0.1", "rounds = 2.5"), "run.rounds"),
        (lambda s: s.replace('op = "bi_wkv7"', 'op = "mamba"'), "group[0].op"),
        (lambda s: s.replace('op = "bi_wkv7"\n', ""), "group[0].op: missing"),
        (lambda s: s.replace('"A-RWKV-T"', '"A-RWKV-XL"'), "group[0].models[0]"),
        (lambda s: s.replace("tokens = [256, 64]", 'tokens = [256, "many"]'), "group[0].tokens[1]"),
        (lambda s: s.replace("tokens = [256, 64]", "tokens = []"), "group[0].tokens"),
        (lambda s: s.replace("tokens = [256, 64]", "seconds = [0.05]"), "group[0].seconds[0]"),
        (lambda s: s + "seconds = [10.0]\n", "group[0].tokens: give exactly one"),
        (lambda s: s.replace("tokens = [256, 64]", ""), "group[0].tokens: give exactly one"),
        (lambda s: s + "batch = [0]\n", "group[0].batch[0]"),
        (lambda s: s + 'dtype = ["float64"]\n', "group[0].dtype[0]"),
        (lambda s: s + 'variant = "spiky"\n', "group[0].variant"),
        (lambda s: s + "colour = 1\n", "group[0].colour: unknown key"),
        (lambda s: s.replace("[[group]]", "[[groups]]"), "groups: unknown key"),
        (lambda s: s.replace("[run]", "[run]\nmin_samples = 50\nmax_samples = 10"), "run.max_samples"),
        (lambda s: s.replace("[[group]]", "[[grop"), "invalid TOML"),
    ],
)
def test_validation_errors_name_the_key(tmp_path, edit, key):
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(S.SuiteError) as info:
        S.load_suite(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_variant_only_for_bi_wkv7(tmp_path):
    text = GOOD.replace('op = "bi_wkv7"', 'op = "attention"') + 'variant = "strong_decay"\n'
    with pytest.raises(S.SuiteError, match=r"group\[0\].variant"):
        S.load_suite(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(S.SuiteError, match="no such suite file"):
        S.load_suite("does/not/exist.toml")


def test_flags_build_the_same_machinery():
    suite = S.suite_from_flags(
        "bi_wkv7",
        impls="torch_loop,torch_chunked",
        models="A-RWKV-T",
        batch="1,2",
        seconds="1.28",
        dtype="float32",
        run={"budget_s": 0.5, "seed": None},
    )
    assert suite.run.budget_s == 0.5 and suite.run.seed == 0
    cases = P.expand_cases(suite, "cpu")
    assert [(c.batch, c.tokens) for c in cases] == [(1, 64), (2, 64)]
    assert suite.groups[0].impls == ("torch_loop", "torch_chunked")


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"tokens": "64,x"}, "--tokens"),
        ({"tokens": "64", "seconds": "1"}, "--tokens"),
        ({"models": "nope"}, "--model"),
        ({"dtype": "int8"}, "--dtype"),
        ({"batch": "-1"}, "--batch"),
        ({"run": {"rounds": 0}}, "--rounds"),
    ],
)
def test_flag_errors_name_the_flag(kw, flag):
    with pytest.raises(S.SuiteError) as info:
        S.suite_from_flags("bi_wkv7", **kw)
    assert f"command line: {flag}" in str(info.value)


def test_unknown_op_flag():
    with pytest.raises(S.SuiteError, match="--op"):
        S.suite_from_flags("conv")


def test_impls_star_and_explicit_names():
    suite = S.suite_from_flags("bi_wkv7", models="A-RWKV-T", tokens="64", impls="*,no_such_kernel")
    case = P.expand_cases(suite, "cpu")[0]
    chosen = dict(P.impls_for(suite.groups[0].impls, ("torch_loop",), case))
    assert chosen["torch_chunked"] is None  # '*' on CPU: the torch implementations
    assert "torch_loop" not in chosen  # excluded
    assert chosen["no_such_kernel"].startswith("not registered")


def test_paper_networks_run_as_people_run_them():
    # the 13.3x claim is read under bf16 autocast; the training parity claim is A-RWKV-S vs AuM-B
    cases = P.expand_cases(S.load_suite(ROOT / "suites" / "paper.toml"), "cuda")
    net = [c for c in cases if c.op == "network"]
    assert {c.precision for c in net if c.mode == "fwd" and c.model == "A-RWKV-B"} == {"pure", "autocast"}
    train = {(c.model, c.seconds) for c in net if c.mode == "fwd_bwd" and c.precision == "autocast"}
    assert {("A-RWKV-S", 10.24), ("A-RWKV-S", 81.92), ("AuM-B", 10.24), ("AuM-B", 81.92)} <= train


def test_suite_round_trips_through_its_dict():
    suite = S.load_suite(ROOT / "suites" / "paper.toml")
    assert S.Suite.from_dict(suite.as_dict()) == suite


def test_baseline_is_no_longer_a_suite_key(tmp_path):
    with pytest.raises(S.SuiteError, match=r"group\[0\]\.baseline: no longer a suite key"):
        S.load_suite(write(tmp_path, GOOD + 'baseline = "torch_loop"\n'))


def test_switch_settings_take_a_bare_flag():
    import argparse

    from wkvbench.harness.run_args import add_run_flags, run_overrides

    parser = argparse.ArgumentParser()
    add_run_flags(parser)
    assert run_overrides(parser.parse_args(["--profile"]))["profile"] == 1
    got = run_overrides(parser.parse_args(["--profile", "0", "--lock-clocks"]))
    assert got["profile"] == 0 and got["lock_clocks"] == 1 and got["budget_s"] is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "2"])
