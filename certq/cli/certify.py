"""`python -m certq certify`: run the certification suite once against one endpoint, without queue or database."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from certq.certification import ModelEndpoint, RunConfig, Verdict, run_certification
from certq.certification.capabilities import Capabilities
from certq.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CommandError
from certq.cli.capabilities import add_capability_flags, capabilities_from_args, describe
from certq.cli.common import print_json, printable
from certq.cli.render import render_verdict
from certq.settings import SettingsError, read_secret

_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "certify",
        help="certify one model endpoint now (no queue, no database)",
        description="Runs the probe battery once and prints the verdict. Exit 0 when CERTIFIED, 1 otherwise.",
    )
    parser.add_argument("--provider", required=True, help="openai (any OpenAI-compatible server) or bedrock")
    parser.add_argument("--model", required=True, help="the model id the provider expects (apiModelId)")
    parser.add_argument("--base-url", help="openai: API root ending in /v1; bedrock: endpoint override")
    parser.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    parser.add_argument("--region", help="bedrock: AWS region (required); openai: a free label (default local)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request read timeout in seconds (60)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_capability_flags(parser)
    parser.set_defaults(run=run)


def endpoint_from_args(args: argparse.Namespace) -> ModelEndpoint:
    """Validates the flags; every problem is a CommandError naming the flag."""
    provider = args.provider
    if provider not in ("openai", "bedrock"):
        raise CommandError(f"--provider must be openai or bedrock, not {provider!r}", EXIT_USAGE)
    if not args.model.strip():
        raise CommandError("--model must not be empty", EXIT_USAGE)
    if args.timeout is None or not args.timeout > 0:
        raise CommandError("--timeout must be a positive number of seconds", EXIT_USAGE)
    base_url = args.base_url
    if provider == "openai":
        if not base_url:
            raise CommandError("--base-url is required for --provider openai (e.g. http://host:8000/v1)", EXIT_USAGE)
        region = args.region or "local"
    else:
        if not args.region or not _AWS_REGION.match(args.region):
            raise CommandError(
                "--region must be an AWS region name for --provider bedrock (e.g. us-east-1)", EXIT_USAGE
            )
        region = args.region
    if base_url is not None and not re.match(r"^https?://[^/\s]+", base_url):
        raise CommandError(f"--base-url must be an http(s) URL, not {base_url!r}", EXIT_USAGE)
    api_key = None
    if args.api_key_env:
        try:
            api_key = read_secret(args.api_key_env)
        except SettingsError as exc:
            raise CommandError(f"--api-key-env: {exc}", EXIT_USAGE) from None
        if api_key is None:
            raise CommandError(f"--api-key-env: environment variable {args.api_key_env} is not set", EXIT_USAGE)
    capabilities = Capabilities.from_json(capabilities_from_args(args))
    return ModelEndpoint(
        provider=provider,
        api_model_id=args.model.strip(),
        region=region,
        base_url=base_url,
        api_key=api_key,
        capabilities=capabilities,
    )


def run(args: argparse.Namespace) -> int:
    endpoint = endpoint_from_args(args)
    config = RunConfig(
        read_timeout_s=args.timeout,
        stream_idle_timeout_s=min(30.0, args.timeout),
        request_deadline_s=max(2 * args.timeout, 10.0),
    )
    verdict = asyncio.run(run_certification(endpoint, config=config))
    if args.json:
        print_json(verdict.to_json())
    else:
        sys.stdout.write(render(verdict, endpoint))
    return EXIT_OK if verdict.passed else EXIT_FAILURE


def render(verdict: Verdict, endpoint: ModelEndpoint) -> str:
    """What was certified, then the verdict as every command shows one (`render_verdict`)."""
    where = endpoint.base_url or f"bedrock-runtime.{endpoint.region}"
    head = printable(f"certify {endpoint.provider} {endpoint.api_model_id} at {where} (region {endpoint.region})")
    declared = describe(endpoint.capabilities.to_json())
    return f"{head}\ndeclared: {declared}\n\n{render_verdict(verdict.to_json())}\n"
