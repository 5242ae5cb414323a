"""The validation sandbox on its own: deleting a model stops its validation child at once."""

import logging
import os
import re
import threading
import time

import pytest

from app.db import make_engine, make_session_factory
from app.migrate import upgrade
from app.orm import ModelRecord, Tenant
from app.settings import Settings
from app.storage import put_blob
from tests.hostile_models import slow_graph
from worker.runtime import WorkerRuntime
from worker.services.model_validation import validate_model

pytestmark = pytest.mark.slow


@pytest.fixture()
def rt(tmp_path) -> WorkerRuntime:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'sandbox.db'}",
        data_dir=tmp_path,
        validation_time_limit_s=300,
        heartbeat_interval_s=0.5,
        worker_memory_limit_bytes=2 << 30,
    )
    upgrade(settings.resolved_database_url)
    return WorkerRuntime(
        settings=settings, session_factory=make_session_factory(make_engine(settings)), queue=None
    )


def test_deleting_a_model_stops_its_validation_in_progress(rt, caplog):
    with rt.session_factory() as session:
        tenant = Tenant(name="sandbox")
        session.add(tenant)
        session.flush()
        model = ModelRecord(
            tenant_id=tenant.id, name="slow", format="onnx", input_shape=[1, 8, 8], num_classes=10,
            input_range=[0.0, 1.0], blob_sha256=put_blob(session, slow_graph(), max_bytes=1 << 24),
        )  # fmt: skip
        session.add(model)
        session.commit()
        model_id = model.id
    caplog.set_level(logging.INFO, logger="gauntlet.models")
    worker = threading.Thread(target=validate_model, args=(rt, model_id))
    worker.start()
    deadline = time.monotonic() + 60
    while (
        not (pids := re.findall(r"validating in child pid (\d+)", caplog.text))
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert pids, caplog.text
    time.sleep(1.0)  # let the child get going
    with rt.session_factory() as session:
        session.delete(session.get(ModelRecord, model_id))
        session.commit()
    worker.join(timeout=60)  # the time limit is 300 s: only the deletion can end it this soon
    assert not worker.is_alive()
    assert "validation stopped" in caplog.text
    with pytest.raises(ProcessLookupError):
        os.kill(int(pids[0]), 0)
