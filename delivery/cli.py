"""Command line of the delivery package: `python -m bluegreen.delivery COMMAND --help`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

PIPELINE_HELP = """\
Takes a service repo (its service.yaml, Dockerfile and tests) through the seed's eleven steps:
build the image and push it (an inline Automation API program instantiating ServiceImage), test
it in isolation, deploy it by digest to integration's offline colour and flip integration, run
the manifest's acceptance.command against integration (BASE_URL) in a throwaway container of
the image, deploy production's offline colour on all hosts, wait for its checks, flip
production's alias, and check it is online.

Prints each step with its elapsed time, writes a JSON report and exits non-zero naming the failing
step. Nothing touches production's alias or live containers before the flip (step 10)."""

ROLLBACK_HELP = """\
Brings back an earlier release of SERVICE in STACK. Without --to: the last release that was live
before the current one (the release history in Consul). When the other colour still runs it, only
the alias moves (after reading that colour's checks, with a check-and-set write), then `live:` is
recorded in stacks/Pulumi.<stack>.yaml and `pulumi up` converges; no container restarts.
Otherwise the release is deployed by its digest to the offline colour (no build), gated, and
flipped. With --to VERSION: any release in the history. `./bg releases SERVICE --stack STACK`
lists them. With git, the alias-only case is `git revert <the flip commit>` followed by
`pulumi up --yes --stack STACK`."""

PREVIEW_HELP = """\
Runs `pulumi preview --diff --json` (Automation API) for each affected stack and renders a short
Markdown summary for a pull request: per service the aliases that flip, the images that change
(digest per host), the containers created, replaced or deleted, and the results of the policy pack
in policies/ when it exists (a pack that fails to load is reported, not fatal).
Affected stacks, unless --stack is given: those whose stacks/Pulumi.<stack>.yaml differs from
--base; a change to the program (Pulumi.yaml, __main__.py, components/) affects all stacks, a
change under a service's folder the stacks that deploy it. With --config-only: no engine preview,
only the settings each affected stack's file changes (what a job without the state passphrase can
show)."""


def parser() -> argparse.ArgumentParser:
    # ./bg names itself, so usage lines read as the command that was typed.
    top = argparse.ArgumentParser(prog=os.environ.get("BLUEGREEN_DELIVERY_PROG", "python -m bluegreen.delivery"),
                                  description="Blue/green delivery: pipeline, rollback, PR preview.")
    top.add_argument("--check", action="store_true",
                     help="only check the command line (exit 2 with usage on an error), run nothing")
    commands = top.add_subparsers(dest="command", required=True,
                                  metavar="{pipeline,rollback,promote,split,status,releases,remove,preview,audit,lock,"
                                         "approve}")
    _pipeline(commands)
    _rollback(commands)
    _promote(commands)
    _split(commands)
    _releases(commands)
    _status(commands)
    _remove(commands)
    _preview(commands)
    _operations(commands)
    return top


def _pipeline(commands) -> None:
    pipeline = commands.add_parser("pipeline", help="commit to production: the eleven steps",
                                   description=PIPELINE_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline.add_argument("service_repo", metavar="SERVICE_REPO_DIR",
                          help="the service's folder (holds service.yaml)")
    pipeline.add_argument("--version", required=True, help="the version to deliver, e.g. 1.4.2")
    pipeline.add_argument("--integration", default="integration", metavar="STACK",
                          help="the integration stack (default: integration)")
    pipeline.add_argument("--production", default="production", metavar="STACK",
                          help="the production stack (default: production)")
    pipeline.add_argument("--report", metavar="FILE",
                          help="JSON report path (default: reports/pipeline-<service>-<version>.json)")
    _lock_wait(pipeline)


def _rollback(commands) -> None:
    rollback = commands.add_parser("rollback", help="move live back to the other colour",
                                   description=ROLLBACK_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    rollback.add_argument("service", metavar="SERVICE")
    rollback.add_argument("--stack", required=True, metavar="STACK")
    rollback.add_argument("--to", metavar="VERSION", help="the release to go back to")
    _lock_wait(rollback)


def _promote(commands) -> None:
    promote = commands.add_parser(
        "promote", help="flip several services of one environment together, all or none",
        description="An environment-wide release: every SERVICE flips to its offline colour (which "
                    "must run the release already) in one Consul transaction, after every one of "
                    "those colours passes its checks; all aliases move or none does. Then live: is "
                    "recorded in the stack files and pulumi up converges. Promoting the same set "
                    "again moves them all back. A service is found in STACK or in its own service "
                    "stack STACK.SERVICE.")
    promote.add_argument("services", metavar="SERVICE", nargs="+")
    promote.add_argument("--stack", required=True, metavar="STACK")
    promote.add_argument("--dry-run", action="store_true",
                         help="print what would flip, change nothing (takes no lock)")
    _lock_wait(promote)


SPLIT_HELP = """\
Sends PERCENT of SERVICE's stable traffic in STACK to its offline colour, the rest to the live
one, sticky per client (the proxy's bluegreen_client cookie, or the header the stack entry's
split.sticky names). 0 ends the split; 100 is a flip (after the offline colour's checks, as any
flip; it ends the split). A share above 0 is written once the offline colour's checks pass, in one
Consul transaction that checks the alias did not move; the proxy applies it without a reload.
Then stacks/Pulumi.<stack>.yaml records it (split.percent, or live: for a flip) and pulumi up
converges. Cohorts (split.cohorts in the stack entry) send chosen clients to a chosen colour.
Nothing restarts: a split only moves traffic."""


def _split(commands) -> None:
    split = commands.add_parser("split", help="part of the stable traffic to the offline colour",
                                description=SPLIT_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    split.add_argument("service", metavar="SERVICE")
    split.add_argument("--stack", required=True, metavar="STACK")
    split.add_argument("--percent", required=True, type=percent, metavar="PERCENT",
                       help="0 (end the split) to 100 (flip)")
    split.add_argument("--dry-run", action="store_true",
                       help="print what would move, change nothing (takes no lock)")
    _lock_wait(split)


def percent(text: str) -> int:
    """A PERCENT argument (argparse type): 0 to 100."""
    from bluegreen.components.model.split import checked_percent
    try:
        return checked_percent(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _releases(commands) -> None:
    releases = commands.add_parser("releases", help="a service's release history in a stack",
                                   description="Lists the release history of SERVICE in STACK from Consul: "
                                               "version, digest, when and by whom it was deployed, "
                                               "when it was last made live, and which colour runs it.")
    releases.add_argument("service", metavar="SERVICE")
    releases.add_argument("--stack", required=True, metavar="STACK")


def _status(commands) -> None:
    status = commands.add_parser("status", help="a service now: live colour, colours, split, last flip",
                                 description="Shows SERVICE in STACK as Consul has it now: the colour "
                                             "the alias names, the release each colour runs, the "
                                             "split and cohorts, and the last flip's bake or "
                                             "rollout (step, outcome, what it was judged by).")
    status.add_argument("service", metavar="SERVICE")
    status.add_argument("--stack", required=True, metavar="STACK")
    status.add_argument("--json", action="store_true", help="the same as JSON")


def _remove(commands) -> None:
    remove = commands.add_parser(
        "remove", help="take a service out of a stack, with its images (and releases)",
        description="Removes SERVICE from STACK: its entry and secrets in the stack file, then pulumi "
                    "up deletes both colours, its dependencies and their data volumes, its network, "
                    "registrations, alias and KV entries; then, once no other stack deploys it, its "
                    "images on the stack's hosts. Back up its dependencies' volumes first. Refused "
                    "while another environment of the platform runs it, unless --force.")
    remove.add_argument("service", metavar="SERVICE")
    remove.add_argument("--stack", required=True, metavar="STACK")
    remove.add_argument("--purge-releases", action="store_true",
                        help="also delete its registry repositories, release records and histories "
                             "(only once no other environment runs it)")
    remove.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    remove.add_argument("--force", action="store_true",
                        help="remove it here although other environments run it (images and releases stay)")


def _preview(commands) -> None:
    preview = commands.add_parser("preview", help="preview affected stacks as Markdown",
                                  description=PREVIEW_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    preview.add_argument("--stack", action="append", dest="stacks", metavar="S",
                         help="a stack to preview (repeatable); default: the affected stacks")
    preview.add_argument("--base", metavar="REF",
                         help="git ref to compare with (default: origin/main if it exists, else HEAD)")
    preview.add_argument("--markdown", metavar="FILE", help="also write the summary to FILE")
    preview.add_argument("--list", action="store_true",
                         help="only print the affected stacks, one per line (platform stacks first)")
    preview.add_argument("--no-policy", action="store_true",
                         help="do not run the policy pack in policies/")
    preview.add_argument("--config-only", action="store_true",
                         help="only the stack settings each affected stack changes, from the stack "
                              "files (no engine, no state, no passphrase: the pull-request job)")


AUDIT_HELP = """\
Lists the audit trail of SERVICE (or of every service of STACK's environment) from Consul KV
(bluegreen/audit/<environment>/<service>/): every flip made by rollback, promote and the pipeline,
each rollback and promotion, every refused or failed command, and every deploy lock released by
hand, with its actor, time, colours (from -> to), version, command and reason. Events older than
the stack's bluegreen:auditRetention (default 30d) are pruned when a new one is written."""

LOCK_HELP = """\
The deploy lock of a service in an environment: a Consul session holds
bluegreen/locks/<environment>/<service> while rollback, promote, the pipeline or `./bg up` /
`./bg pulumi up` works on it; a second one is refused naming the holder (or waits with
--lock-wait). The session lapses within 20s of its holder's death. status: who holds it, since
when. release: ends the holder's session (for a holder that is gone; it is audited)."""


APPROVE_HELP = """\
Lets a flip of SERVICE held by `confirm: manual` (its stack entry) go. The held command (a
`pulumi up`, rollback, promote or split) waits in its pre-flip step, up to the entry's
confirmTimeout (default 15m), for this approval in Consul KV (bluegreen/approvals/<environment>/
<service>): it shows what it would move (from -> to, version, who asked), this marks that very
record approved (check-and-set) and audits who approved; the waiting command then flips. With no
flip waiting it changes nothing and exits 2. A held flip that times out leaves traffic where it is."""


def duration(text: str) -> float:
    """A DURATION argument (argparse type): 30s, 10m, 2h, 1d."""
    # Imported when an argument is given: the help needs nothing but argparse.
    from bluegreen.components.model.validation import LONG_UNITS, duration_hint, parse_duration
    seconds = parse_duration(text, LONG_UNITS)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; {duration_hint(LONG_UNITS)}")
    return seconds


def _lock_wait(command: argparse.ArgumentParser) -> None:
    command.add_argument("--lock-wait", type=duration, default=0.0, metavar="DURATION",
                         help="wait up to DURATION (e.g. 30s, 10m) for the service's deploy lock "
                              "when another command holds it (default: refuse at once)")


def _operations(commands) -> None:
    audit = commands.add_parser("audit", help="who flipped, rolled back or promoted what, and when",
                                description=AUDIT_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("service", metavar="SERVICE", nargs="?")
    audit.add_argument("--stack", required=True, metavar="STACK")
    audit.add_argument("--since", type=duration, metavar="DURATION",
                       help="only the last DURATION, e.g. 1d, 2h (default: all that is kept)")
    audit.add_argument("--json", action="store_true", help="the records as a JSON list")
    lock = commands.add_parser("lock", help="a service's deploy lock: who holds it; release it",
                               description=LOCK_HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    lock.add_argument("action", choices=("status", "release"))
    lock.add_argument("service", metavar="SERVICE", nargs="?",
                      help="the service (status: default every service of STACK)")
    lock.add_argument("--stack", required=True, metavar="STACK")
    approve = commands.add_parser("approve", help="let a flip held by confirm: manual go",
                                  description=APPROVE_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    approve.add_argument("service", metavar="SERVICE")
    approve.add_argument("--stack", required=True, metavar="STACK")


def command_line(argv: list[str]) -> str:
    """The command as typed, for the audit trail and the lock's holder."""
    prog = os.environ.get("BLUEGREEN_DELIVERY_PROG", "python -m bluegreen.delivery")
    return " ".join([prog, *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.check:
        return 0
    if args.command in ("pipeline", "rollback", "promote", "split", "lock", "approve"):
        from .audit import operator
        who = operator(command_line(argv))
    if args.command == "pipeline":
        from .pipeline import PipelineArgs, run_pipeline
        return run_pipeline(PipelineArgs(service_repo=args.service_repo, version=args.version,
                                         integration=args.integration, production=args.production,
                                         report=args.report, lock_wait_s=args.lock_wait), who=who)
    if args.command == "rollback":
        from .rollback import run_rollback
        return run_rollback(args.service, args.stack, args.to, who=who, lock_wait_s=args.lock_wait)
    if args.command == "promote":
        from .promote import run_promote
        return run_promote(args.stack, args.services, args.dry_run, who=who,
                           lock_wait_s=args.lock_wait)
    if args.command == "split":
        from .split import run_split
        return run_split(args.service, args.stack, args.percent, args.dry_run, who=who,
                         lock_wait_s=args.lock_wait)
    if args.command == "audit":
        from .audit import run_audit
        return run_audit(args.service, args.stack, args.since, args.json)
    if args.command == "lock":
        from .lock import run_lock
        return run_lock(args.action, args.service, args.stack, who=who)
    if args.command == "approve":
        from .approve import run_approve
        return run_approve(args.service, args.stack, who=who)
    if args.command == "status":
        from .status import run_status
        return run_status(args.service, args.stack, args.json)
    if args.command == "releases":
        from .releases import run_releases
        return run_releases(args.service, args.stack)
    if args.command == "remove":
        from .remove import run_remove
        return run_remove(args.service, args.stack, purge=args.purge_releases,
                          dry_run=args.dry_run, force=args.force)
    if args.config_only:
        from .config_preview import run_config_preview
        return run_config_preview(base=args.base, markdown=args.markdown)
    from .preview import run_preview
    return run_preview(stacks=args.stacks, base=args.base, markdown=args.markdown,
                       list_only=args.list, policy=not args.no_policy)


if __name__ == "__main__":
    sys.exit(main())
