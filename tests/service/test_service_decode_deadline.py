"""GSIC_DECODE_TIMEOUT: a /decode past its deadline is 503 decode_timeout, and its slot comes back once the
render thread has really ended (it cannot be killed), never sooner."""

import time

from svc_helpers import assert_problem, metric
from tests.codec.hostile import DIR

SLOW = (DIR / "max_evaluations.gsi").read_bytes()  # the costliest file within the default limits: ~0.25 s here


def busy_slots(client) -> float:
    return metric(client.get("/metrics").text, "gsic_cpu_slots_busy")


def test_a_decode_past_its_deadline_is_503_and_its_slot_comes_back(make_client, bitstream):
    client = make_client(workers=0, decode_concurrency=1, decode_timeout=0.05)
    assert busy_slots(client) == 0
    response = client.post("/decode", content=SLOW)
    assert_problem(response, 503, "decode_timeout")
    assert response.headers["retry-after"] == "1"
    # The abandoned render still holds the only slot: a cheap decode now waits for it and runs out of time
    # too, rather than starting a second thread beside it.
    assert_problem(client.post("/decode", content=bitstream), 503, "decode_timeout")

    deadline = time.monotonic() + 30
    while busy_slots(client) != 0:
        assert time.monotonic() < deadline, "the slot was not given back after the render ended"
        time.sleep(0.05)
    client.app.state.settings = client.app.state.settings.model_copy(update={"decode_timeout": 30.0})
    decoded = client.post("/decode", content=bitstream)
    assert decoded.status_code == 200 and decoded.headers["content-type"] == "image/png"
    assert busy_slots(client) == 0


def test_the_default_deadline_lets_the_worst_file_decode(idle_client):
    assert idle_client.post("/decode", content=SLOW).status_code == 200
