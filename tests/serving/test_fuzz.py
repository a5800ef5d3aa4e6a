"""An OpenAPI-driven fuzz run (schemathesis) against real servers on 127.0.0.1: a text
classifier, a decoder, an image and a table model, every operation, valid and invalid payloads; no answer may be a 5xx. Bounded:
a fixed number of examples per operation, derandomized so a failure reproduces."""

import itertools
import threading

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from conftest import ENCODER  # noqa: E402
from lmforge.serving.app import build_app  # noqa: E402
from lmforge.serving.config import ServeConfig  # noqa: E402
from lmforge.serving.server import free_port, wait_ready  # noqa: E402


@pytest.fixture(scope="module", params=["classifier", "decoder", "image", "table"])
def served(request, tmp_path_factory, make_task_model):
    import uvicorn

    if request.param == "classifier":
        model = make_task_model(tmp_path_factory.mktemp("fuzz") / "best", ENCODER, "sequence", ["neg", "pos"])
    else:  # the session's tiny decoder, or an image / table model trained for the serving tests
        model = request.getfixturevalue({"decoder": "tiny_decoder", "image": "image_model",
                                         "table": "table_model"}[request.param])
        model = model if request.param == "decoder" else model / "finetune"
    cfg = ServeConfig(model=str(model), max_new_tokens=8, max_chars=2000, max_texts=16, timeout_s=20)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(cfg), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, 60)
    yield base, str(model)
    server.should_exit = True
    thread.join(timeout=10)


def test_no_request_gets_a_server_error(served):
    from hypothesis import given

    served, model_dir = served
    api = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [op.ok() for op in api.get_all_operations()]
    assert {o.path for o in operations} >= {"/v1/classify", "/v1/ner", "/v1/embed", "/v1/generate", "/v1/model"}
    calls = []
    for op, mode in itertools.product(operations, list(schemathesis.GenerationMode)):  # valid and invalid payloads
        @given(case=op.as_strategy(mode))
        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            r = case.call_and_validate(checks=[not_a_server_error], timeout=30)
            calls.append(r.status_code)
            if r.status_code >= 400:  # error bodies: JSON naming the field, no traceback, no file path
                assert set(r.json()) == {"error"}, r.text
                assert not any(x in r.text for x in ("Traceback", model_dir, "site-packages", ".py")), r.text

        try:
            fuzz()
        except Unsatisfiable:  # e.g. no invalid request exists for a GET without parameters
            assert mode == schemathesis.GenerationMode.NEGATIVE and op.method.upper() == "GET", op.path
    assert len(calls) >= 5 * len(operations)
    assert any(400 <= c < 500 for c in calls) and any(c == 200 for c in calls)  # both kinds were sent
