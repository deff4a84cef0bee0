"""Skip prediction keeps a first-call (compile, autotune) time-out apart from slow timed calls."""

import inspect

from wkvbench.harness import plan as P
from wkvbench.harness import predict
from wkvbench.harness import runner as R
from wkvbench.harness import suite as S
from wkvbench.schema import KEY


def _cases():
    suite = S.suite_from_flags("bi_wkv7", models="A-RWKV-B", tokens="1000,4000", run={"max_cell_s": 60})
    small, big = P.expand_cases(suite, "cpu")
    return suite, small, big


def test_a_first_call_timeout_predicts_nothing():
    suite, small, big = _cases()
    pred = predict.SkipPredictor(suite.run)
    note = "first call + check + warm-up exceeded max_cell_s=60 s"
    pred.learn(small, "fla", "timeout", None, note)
    assert pred.why_skip(big, "fla") is None and pred.first_call_slow
    pred.learn(small, "slow", "timeout", None, "5 timed calls exceeded max_cell_s=60 s")
    assert pred.why_skip(big, "slow").startswith("timed out at a smaller or equal size")
    pred.learn(small, "old", "timeout", None)  # no note (older callers): a timeout as before
    assert pred.why_skip(big, "old").startswith("timed out")
    resumed = predict.SkipPredictor(suite.run)  # --resume reads the note from the rows
    resumed.learn_rows([{**dict(zip(KEY, small.key("fla"), strict=True)), "status": "timeout", "note": note}],
                       [small, big])  # fmt: skip
    assert resumed.why_skip(big, "fla") is None
    assert predict.first_call_timeout("timeout", note) and not predict.first_call_timeout("failed", note)


def test_the_runner_writes_the_note_the_predictor_reads():
    src = inspect.getsource(R.Runner._check)
    assert f'"{predict.FIRST_CALL_NOTE} + check' in src or f'f"{predict.FIRST_CALL_NOTE} + check' in src
