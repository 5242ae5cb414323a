"""The FastAPI application: routes, error handlers, middleware, and the engine and queue it uses."""

import logging

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.auth import KeyCache
from app.db import autocommit_engine, make_engine, make_session_factory
from app.errors import install_error_handlers
from app.middleware import BodySizeLimit, RequestMetrics, UnhandledErrors
from app.plugins import load_plugins
from app.queue import JobQueue
from app.routes import artifacts, datasets, health, jobs, models, webhooks
from app.routes.openapi_schema import finish_openapi, operation_id
from app.service_metrics import service_registry
from app.settings import Settings, get_settings

DESCRIPTION = (
    "Attack-and-defend as a service for neural networks. Upload a model (ONNX or safetensors), pick a "
    "dataset, submit a job, poll it, and fetch a robustness report. Authenticate with "
    "`Authorization: Bearer <api key>` (create one with `gauntlet keys create --tenant NAME`)."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for the given settings (the process's settings by default)."""
    settings = settings or get_settings()
    load_plugins(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.access").disabled = not settings.access_log
    # Swagger UI and ReDoc served from the installed package, so /docs works without the internet.
    app = FastAPIOffline(
        title="Gauntlet",
        version=__version__,
        description=DESCRIPTION,
        static_url="/docs-assets",
        swagger_ui_parameters={"validatorUrl": None},
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings)
    app.state.session_factory = make_session_factory(app.state.engine)
    app.state.autocommit_engine = autocommit_engine(app.state.engine)
    app.state.autocommit_session_factory = make_session_factory(app.state.autocommit_engine)
    app.state.queue = JobQueue(settings)
    app.state.key_cache = KeyCache(settings.api_key_cache_s)
    app.state.service_metrics = service_registry(app.state.session_factory, settings.stale_after_s)
    install_error_handlers(app)
    for module in (health, models, datasets, jobs, artifacts, webhooks):
        app.include_router(module.router)
    generate_openapi = app.openapi
    app.openapi = lambda: finish_openapi(generate_openapi())  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(UnhandledErrors)
    app.add_middleware(RequestMetrics)
    return app
