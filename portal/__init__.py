"""MSP Portal: the application factory.

One deployment serves two sites: the platform console on the base domain and every tenant's
site on its own host. Each is a Flask app; `HostDispatcher` sends a request to one of them by
its Host header, so the console's and the tenants' URLs never collide and a tenant request
cannot reach a console view.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from portal.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _base_app(name: str, settings: Settings) -> Flask:
    from portal import errors, observability, security, validation, web

    app = Flask(
        name,
        root_path=str(ROOT / "portal"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(settings.instance_path),
    )
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.production,
        WTF_CSRF_TIME_LIMIT=None,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        PORTAL=settings,
    )
    app.url_map.converters["int"] = validation.IdConverter  # ids past int4 are a 404
    web.init_app(app)
    security.init_app(app)
    observability.init_metrics(app)
    errors.init_app(app)
    return app


def create_app(config: dict | None = None) -> Flask:
    """Build the portal. `config` overrides settings fields (tests pass database_url etc.)."""
    import portal.console.account_views
    import portal.console.audit_views
    import portal.console.jobs_views
    import portal.console.outbox_views
    import portal.console.overview_views
    import portal.console.sign_in_views
    import portal.console.staff_views
    import portal.console.tenant_access_views
    import portal.console.tenants_views  # noqa: F401  (the page modules attach routes to bp)
    import portal.site.account_views
    import portal.site.audit_views
    import portal.site.consent_views
    import portal.site.overview_views
    import portal.site.roles_views
    import portal.site.security_views
    import portal.site.sessions_views
    import portal.site.sign_in_views
    import portal.site.staff_views
    import portal.site.user_views
    import portal.site.users_views  # noqa: F401  (the page modules attach routes to bp)
    from portal import observability
    from portal.auth import flood
    from portal.console.blueprint import bp as console_bp
    from portal.ops import bp as ops_bp
    from portal.passwords import configure_hashing
    from portal.queue import queues
    from portal.site.blueprint import bp as site_bp
    from portal.startup import configure_services
    from portal.web import HostDispatcher

    settings = load_settings(**(config or {}))
    configure_services(settings)
    configure_hashing(
        concurrency=settings.password_hash_concurrency,
        wait_seconds=settings.password_hash_wait_ms / 1000,
        host_concurrency=settings.password_hash_host_concurrency,
        redis=lambda: queues.redis,
    )
    observability.configure_logging(settings)

    platform = _base_app("portal", settings)
    platform.register_blueprint(ops_bp)
    platform.register_blueprint(console_bp)
    from portal.console.auth import init_login as init_console_login

    init_console_login(platform)
    flood.init_app(platform)

    tenant_site = _base_app("portal.site", settings)
    tenant_site.config = platform.config  # one configuration for both sites
    tenant_site.register_blueprint(site_bp)
    from portal.site.auth import init_login as init_site_login

    init_site_login(tenant_site)
    flood.init_app(tenant_site)

    platform.extensions["portal.tenant_site"] = tenant_site
    dispatcher = HostDispatcher(platform.wsgi_app, tenant_site.wsgi_app, settings)
    if settings.proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.proxy_count
        dispatcher = ProxyFix(dispatcher, x_for=n, x_proto=n, x_host=n)
    platform.wsgi_app = dispatcher
    return platform
