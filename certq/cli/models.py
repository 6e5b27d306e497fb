"""`python -m certq models list|show|register|update`: model deployments, through the HTTP API.

The API is the one place a registration is checked (deployment rules, MODEL_EGRESS_ALLOW, MODEL_CREDENTIALS,
capabilities), so this command sends what the flags say and prints what the API answers. Capability flags are
checked here first, so a mistake names the flag rather than the JSON field.
"""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

import httpx

from certq.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from certq.cli.capabilities import add_capability_flags, capabilities_from_args, describe
from certq.cli.common import EXIT_NOT_FOUND, EXIT_UNAVAILABLE, print_json, printable, settings_from, table
from certq.settings import Settings

BASE = "/api/models"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help="model deployments: list, show, register, update (through the API)",
        description="Model deployments through the HTTP API (--api-url, default http://API_HOST:API_PORT; "
        "--token or the first fitting entry of API_TOKENS).\n\n"
        "example: certq models register --name tiny --provider openai --model tiny "
        "--base-url http://127.0.0.1:8080/v1 --region local --tools --context-window 4096",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)

    listing = actions.add_parser("list", help="every model, newest first, with its declared capabilities")
    listing.add_argument("--all", action="store_true", help="deactivated ones too")
    _common(listing)
    listing.set_defaults(run=run_list)

    show = actions.add_parser("show", help="one model and its declared capabilities")
    show.add_argument("model_id", metavar="MODEL_ID")
    _common(show)
    show.set_defaults(run=run_show)

    add = actions.add_parser("register", help="register a model deployment (POST /api/models)")
    add.add_argument("--name", required=True)
    add.add_argument("--provider", required=True, choices=["openai", "bedrock"])
    add.add_argument("--model", required=True, metavar="API_MODEL_ID", help="the model id the provider expects")
    add.add_argument("--base-url", help="openai: API root ending in /v1; bedrock: endpoint override")
    add.add_argument("--api-key-env", metavar="NAME", help="the environment variable holding the key on workers")
    add.add_argument(
        "--region", action="append", required=True, metavar="REGION", help="a region it is deployed in (repeat)"
    )
    add.add_argument("--served-model", metavar="NAME", help="the name it reports, where it is not API_MODEL_ID")
    add_capability_flags(add)
    _common(add)
    add.set_defaults(run=run_register)

    update = actions.add_parser(
        "update",
        help="replace a model's declared capabilities (PATCH /api/models/ID)",
        description="The capability flags given replace the whole declaration, as a PATCH does: a capability "
        "not given is no longer declared. --no-capabilities declares none (chat only).",
    )
    update.add_argument("model_id", metavar="MODEL_ID")
    update.add_argument("--no-capabilities", action="store_true", help="declare none (chat only)")
    add_capability_flags(update)
    _common(update)
    update.set_defaults(run=run_update)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", metavar="URL", help="the API (default http://API_HOST:API_PORT)")
    parser.add_argument("--token", help="bearer token (default: the first of API_TOKENS able to do it)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def run_list(args: argparse.Namespace) -> int:
    models: list[dict[str, Any]] = []
    page = 1
    while True:
        params: dict[str, Any] = {"page": page, "limit": 100}
        if not args.all:
            params["active"] = "true"
        answer = _call(args, "GET", BASE, params=params)
        models.extend(answer.get("models", []))
        if page >= int(answer.get("pagination", {}).get("totalPages", 1)):
            break
        page += 1
    if args.json:
        print_json(models)
        return EXIT_OK
    rows = [
        [
            m["id"],
            m["name"],
            m["provider"],
            m["apiModelId"],
            ",".join(m["regions"]),
            "yes" if m["isActive"] else "no",
            describe(m.get("capabilities")),
        ]
        for m in models
    ]
    print(table(rows, ["id", "name", "provider", "apiModelId", "regions", "active", "capabilities"]))
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    return _print(args, _call(args, "GET", f"{BASE}/{_model_id(args.model_id)}"))


def run_register(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "provider": args.provider,
        "apiModelId": args.model,
        "regions": args.region,
    }
    for flag, field in (("base_url", "baseUrl"), ("api_key_env", "apiKeyEnv"), ("served_model", "servedModel")):
        if getattr(args, flag) is not None:
            body[field] = getattr(args, flag)
    capabilities = capabilities_from_args(args)
    if capabilities is not None:
        body["capabilities"] = capabilities
    return _print(args, _call(args, "POST", BASE, body=body))


def run_update(args: argparse.Namespace) -> int:
    model_id = _model_id(args.model_id)
    capabilities = capabilities_from_args(args)
    if args.no_capabilities and capabilities is not None:
        raise CommandError("--no-capabilities cannot be combined with capability flags", EXIT_USAGE)
    if not args.no_capabilities and capabilities is None:
        raise CommandError(
            "nothing to change: give capability flags (--tools, --context-window N, ...) or --no-capabilities",
            EXIT_USAGE,
        )
    return _print(args, _call(args, "PATCH", f"{BASE}/{model_id}", body={"capabilities": capabilities or {}}))


def _model_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise CommandError(f"MODEL_ID {text[:80]!r} is not a uuid (see `certq models list`)", EXIT_USAGE) from None


def _print(args: argparse.Namespace, model: dict[str, Any]) -> int:
    if args.json:
        print_json(model)
        return EXIT_OK
    where = model.get("baseUrl") or "-"
    lines = [
        f"model {model['id']}  {model['name']}" + ("" if model["isActive"] else "  (deactivated)"),
        f"  provider      {model['provider']}  apiModelId {model['apiModelId']}  at {where}",
        f"  regions       {', '.join(model['regions'])}",
        f"  capabilities  {describe(model.get('capabilities'))}",
    ]
    print("\n".join(printable(line) for line in lines))
    return EXIT_OK


def _token(args: argparse.Namespace, settings: Settings, method: str) -> str:
    roles = settings.token_roles
    fitting = [secret for secret, role in roles if method == "GET" or role == "admin"]
    token = args.token or next(iter(fitting or [secret for secret, _ in roles]), None)
    if not token:
        raise CommandError("the API needs a bearer token: --token T, or API_TOKENS in the environment", EXIT_USAGE)
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise CommandError("the bearer token must be ASCII, without spaces or control characters", EXIT_USAGE)
    return str(token)


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = settings_from(args)
    base = (args.api_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")
    try:
        response = httpx.request(
            method,
            f"{base}{path}",
            json=body,
            params=params,
            timeout=15,
            headers={"Authorization": f"Bearer {_token(args, settings, method)}"},
        )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise CommandError(f"--api-url {printable(base)!r} is not an http(s) URL: {exc}", EXIT_USAGE) from None
    except httpx.HTTPError as exc:
        raise CommandError(f"no answer from the API at {base}: {exc or type(exc).__name__}", EXIT_UNAVAILABLE) from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        detail = (data.get("detail") if isinstance(data, dict) else None) or response.text[:300]
        code = EXIT_NOT_FOUND if response.status_code == 404 else EXIT_FAILURE
        raise CommandError(f"the API refused ({response.status_code}): {printable(detail)}", code)
    if not isinstance(data, dict):
        raise CommandError(f"the API at {base} answered something other than a JSON object", EXIT_FAILURE)
    return data
