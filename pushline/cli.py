"""The ``pushline`` command line.

A mistake on the command line or in the input gets one line on stderr and exit code 2; a failure of
the environment (Kafka unreachable, topic mismatch) gets one line and exit code 1. No tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import NoReturn

from pushline.errors import ConfigError, PushlineError, ValidationError

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; a one-line message is easier to act on.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _cmd_emulate_stack(args: argparse.Namespace) -> int:
    from pushline.stack import run_stack_forever  # noqa: PLC0415 - keep `pushline --help` fast

    return run_stack_forever(
        kafka_port=args.kafka_port,
        registry_port=args.registry_port,
        kafka=not args.no_kafka,
        registry=not args.no_registry,
        providers=not args.no_providers,
        receipts_api=args.receipts_api,
    )


def _cmd_topics_ensure(args: argparse.Namespace) -> int:
    from pushline.config import KafkaConfig, TopicsConfig  # noqa: PLC0415
    from pushline.topics import ensure_topics  # noqa: PLC0415

    overrides = {
        k: v
        for k, v in {
            "partitions": args.partitions,
            "replication_factor": args.replication_factor,
            "prefix": args.prefix,
        }.items()
        if v is not None
    }
    topics = TopicsConfig.from_env(**overrides)
    for report in ensure_topics(KafkaConfig.from_env(), topics):
        print(
            f"{report.action:8} {report.name}  partitions={report.partitions} "
            f"replication.factor={report.replication_factor}"
        )
    return 0


def _parse_data(items: Sequence[str]) -> dict[str, str]:
    data = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("--data", f"expected KEY=VALUE, got {item!r}")
        data[key] = value
    return data


def _cmd_send(args: argparse.Namespace) -> int:
    from producers import (  # noqa: PLC0415
        NotificationProducer,
        ProducerOptions,
        new_notification,
        validate_request,
    )
    from schemas import (  # noqa: PLC0415
        Fallback,
        FallbackChannel,
        NotificationContent,
        Priority,
        PushType,
    )

    fallback = None
    if args.fallback_email or args.fallback_sms:
        if not args.fallback_text:
            raise ValidationError("--fallback-text", "is required with a fallback address")
        channel = FallbackChannel.EMAIL if args.fallback_email else FallbackChannel.SMS
        fallback = Fallback(
            channel=channel,
            address=args.fallback_email or args.fallback_sms,
            text=args.fallback_text,
            subject=args.fallback_subject,
        )
    content = NotificationContent(
        title=args.title,
        subtitle=args.subtitle,
        body=args.body,
        badge=args.badge,
        sound=args.sound,
        category=args.category,
        thread_id=args.thread_id,
        content_available=args.content_available,
        mutable_content=args.mutable_content,
        custom_data=_parse_data(args.data),
    )
    request = new_notification(
        app_id=args.app_id,
        platform=args.platform,
        device_token=args.token,
        ttl=timedelta(seconds=args.ttl),
        content=content,
        device_key=args.device_key,
        user_id=args.user_id,
        push_type=PushType(args.push_type),
        priority=Priority(args.priority),
        collapse_key=args.collapse_key,
        receipt_deadline_ms=int(args.receipt_deadline * 1000) if args.receipt_deadline else None,
        fallback=fallback,
    )
    # Refuse bad input before connecting anywhere: the user gets the validation error, not a
    # broker connection error (the producer validates again; that is cheap).
    request = validate_request(request, truncate=args.truncate)
    with NotificationProducer(options=ProducerOptions(truncate=args.truncate)) as producer:
        nid = producer.send(request)
    if args.json:
        print(json.dumps({"notification_id": nid, "key": request.key}))
    else:
        print(nid)
    return 0


def _cmd_dispatcher(args: argparse.Namespace) -> int:
    from dispatcher._service import run_dispatcher_service  # noqa: PLC0415

    return run_dispatcher_service(os.environ)


def _cmd_receipts_api(args: argparse.Namespace) -> int:
    from receipts import run_receipts_api  # noqa: PLC0415

    return run_receipts_api(os.environ)


def _cmd_reconciler(args: argparse.Namespace) -> int:
    from receipts._reconciler_service import run_reconciler_service  # noqa: PLC0415

    return run_reconciler_service(os.environ)


def _cmd_fallback_sender(args: argparse.Namespace) -> int:
    from receipts._fallback import run_fallback_sender_service  # noqa: PLC0415

    return run_fallback_sender_service(os.environ)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pushline.demo import DemoOptions, run_demo  # noqa: PLC0415

    if args.receipt_deadline <= 0:
        raise ValidationError("--receipt-deadline", "must be a positive number of seconds")
    options = DemoOptions(receipt_deadline_ms=int(args.receipt_deadline * 1000))
    return run_demo(notifications=args.notifications, as_json=args.json, options=options)


def _cmd_bench(args: argparse.Namespace) -> int:
    from pushline.bench import (  # noqa: PLC0415
        BenchOptions,
        format_table,
        run_dispatcher_bench,
        to_json,
    )

    options = BenchOptions(
        notifications=args.notifications,
        processes=args.processes,
        partitions=args.partitions,
        timeout_s=args.timeout,
        provider=args.provider,
        rate=args.rate,
        baselines=args.baselines,
        scaling=args.scaling,
        pin=args.pin,
        broker_hop=args.broker_hop,
    )
    # Progress goes to stderr, so stdout is only the table or the JSON object.
    result = run_dispatcher_bench(options, say=lambda line: print(line, file=sys.stderr))
    print(json.dumps(to_json(result)) if args.json else format_table(result))
    return 0


def _cmd_bench_receipts_api(args: argparse.Namespace) -> int:
    from pushline.bench import (  # noqa: PLC0415
        ReceiptsBenchOptions,
        format_receipts_table,
        receipts_to_json,
        run_receipts_bench,
    )

    options = ReceiptsBenchOptions(seconds=args.seconds, connections=args.connections)
    result = run_receipts_bench(options, say=lambda line: print(line, file=sys.stderr))
    print(json.dumps(receipts_to_json(result)) if args.json else format_receipts_table(result))
    return 0


def _cmd_bench_reconciler(args: argparse.Namespace) -> int:
    from pushline.bench import (  # noqa: PLC0415
        ReconcilerBenchOptions,
        format_reconciler_table,
        reconciler_to_json,
        run_reconciler_bench,
    )

    options = ReconcilerBenchOptions(events=args.events, timeout_s=args.timeout)
    result = run_reconciler_bench(options, say=lambda line: print(line, file=sys.stderr))
    print(json.dumps(reconciler_to_json(result)) if args.json else format_reconciler_table(result))
    return 0


def _cmd_config_reference(args: argparse.Namespace) -> int:
    from pushline.config_reference import render_reference  # noqa: PLC0415

    print(render_reference(), end="")
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from pushline._dlq_ops import run_dlq  # noqa: PLC0415

    return run_dlq(args, sys.stdout)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pushline", description="Kafka-native push-notification pipeline.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    emulate = sub.add_parser("emulate", help="run emulators for development and tests")
    emulate_sub = emulate.add_subparsers(dest="what", required=True, parser_class=_Parser)
    stack = emulate_sub.add_parser(
        "stack",
        help="embedded broker, schema registry, APNs and FCM emulators; prints NAME=value "
        "lines, then READY",
    )
    stack.add_argument("--kafka-port", type=int, default=0, help="default: a free port")
    stack.add_argument("--registry-port", type=int, default=0, help="default: a free port")
    stack.add_argument(
        "--no-providers", action="store_true", help="without the APNs and FCM emulators"
    )
    stack.add_argument(
        "--no-kafka", action="store_true", help="without the broker (an external cluster is used)"
    )
    stack.add_argument(
        "--no-registry", action="store_true", help="without the schema registry emulator"
    )
    stack.add_argument(
        "--receipts-api",
        action="store_true",
        help="also run `pushline receipts-api` (prints RECEIPTS_URL=)",
    )
    stack.set_defaults(func=_cmd_emulate_stack)

    topics = sub.add_parser("topics", help="manage the pipeline's topics")
    topics_sub = topics.add_subparsers(dest="what", required=True, parser_class=_Parser)
    ensure = topics_sub.add_parser("ensure", help="create the topics or check they match")
    ensure.add_argument("--partitions", type=int, help="overrides PUSHLINE_TOPIC_PARTITIONS")
    ensure.add_argument(
        "--replication-factor", type=int, help="overrides PUSHLINE_TOPIC_REPLICATION_FACTOR"
    )
    ensure.add_argument("--prefix", help="overrides PUSHLINE_TOPIC_PREFIX")
    ensure.set_defaults(func=_cmd_topics_ensure)

    send = sub.add_parser("send", help="send one notification")
    send.add_argument("--app-id", required=True)
    send.add_argument("--platform", required=True, type=str.upper, choices=["APNS", "FCM"])
    send.add_argument("--token", required=True, help="device token")
    send.add_argument("--device-key", help="Kafka key instead of the token")
    send.add_argument("--user-id")
    send.add_argument("--title")
    send.add_argument("--subtitle")
    send.add_argument("--body")
    send.add_argument("--badge", type=int)
    send.add_argument("--sound")
    send.add_argument("--category")
    send.add_argument("--thread-id")
    send.add_argument("--content-available", action="store_true")
    send.add_argument("--mutable-content", action="store_true")
    send.add_argument("--data", action="append", default=[], metavar="KEY=VALUE")
    send.add_argument(
        "--push-type",
        type=str.upper,
        default="ALERT",
        choices=[
            "ALERT",
            "BACKGROUND",
            "VOIP",
            "LOCATION",
            "COMPLICATION",
            "FILEPROVIDER",
            "MDM",
            "LIVEACTIVITY",
            "PUSHTOTALK",
        ],
    )
    send.add_argument(
        "--priority", type=str.upper, default="HIGH", choices=["HIGH", "NORMAL", "LOW"]
    )
    send.add_argument("--collapse-key")
    send.add_argument("--ttl", type=float, default=86_400.0, help="seconds (default one day)")
    send.add_argument(
        "--receipt-deadline", type=float, help="seconds to wait for a receipt before fallback"
    )
    fallback = send.add_mutually_exclusive_group()
    fallback.add_argument("--fallback-email", metavar="ADDRESS")
    fallback.add_argument("--fallback-sms", metavar="E164")
    send.add_argument("--fallback-text")
    send.add_argument("--fallback-subject")
    send.add_argument("--truncate", action="store_true", help="shorten an alert that is too large")
    send.add_argument("--json", action="store_true", help="print a JSON object")
    send.set_defaults(func=_cmd_send)

    dispatcher = sub.add_parser(
        "dispatcher", help="consume push.requests and push.retries, send to APNs and FCM"
    )
    dispatcher.set_defaults(func=_cmd_dispatcher)

    fallback_sender = sub.add_parser(
        "fallback-sender", help="consume push.fallbacks, send email (SMTP) and SMS"
    )
    fallback_sender.set_defaults(func=_cmd_fallback_sender)

    receipts_api = sub.add_parser(
        "receipts-api",
        help="HTTP API for device receipts (POST /v1/receipts) to push.receipts; "
        "settings from PUSHLINE_RECEIPTS_* variables",
    )
    receipts_api.set_defaults(func=_cmd_receipts_api)

    bench = sub.add_parser("bench", help="benchmarks on the embedded stack")
    bench_sub = bench.add_subparsers(dest="what", required=True, parser_class=_Parser)
    bench_dispatcher = bench_sub.add_parser(
        "dispatcher",
        help="N notifications through `pushline dispatcher` to the APNs (or FCM) emulator: "
        "capacity, or added latency at a paced rate, with httpx, aioapns and h2load baselines "
        "from the same run",
    )
    bench_dispatcher.add_argument("--notifications", type=int, default=20_000)
    bench_dispatcher.add_argument("--processes", type=int, default=1, help="dispatcher processes")
    bench_dispatcher.add_argument("--partitions", type=int, help="default: max(6, --processes)")
    bench_dispatcher.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the dispatchers may take (600)"
    )
    bench_dispatcher.add_argument(
        "--provider", choices=["apns", "fcm"], default="apns", help="emulator to send to (apns)"
    )
    bench_dispatcher.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="paced mode: produce R notifications/s while the dispatchers run and report the "
        "latency the pipeline adds (default: capacity from a pre-produced backlog)",
    )
    bench_dispatcher.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the client baselines and the emulator's h2load ceiling (default: on)",
    )
    bench_dispatcher.add_argument(
        "--scaling",
        action="store_true",
        help="measure one process first, then --processes, and print the ratio",
    )
    bench_dispatcher.add_argument(
        "--pin",
        action="store_true",
        help="each dispatcher process on a CPU of its own (the highest-numbered), everything else "
        "on the rest; the baselines on the first dispatcher's CPU (Linux; needs --processes + 1 "
        "CPUs)",
    )
    bench_dispatcher.add_argument(
        "--broker-hop",
        action="store_true",
        help="with --rate: also time the broker hop (Kafka timestamp -> a consumer of the bench's "
        "own, in its own process; it adds that consumer's load to the machine)",
    )
    bench_dispatcher.add_argument("--json", action="store_true", help="print a JSON object")
    bench_dispatcher.set_defaults(func=_cmd_bench)
    bench_receipts = bench_sub.add_parser(
        "receipts-api", help="requests/s (and per core) of `pushline receipts-api`"
    )
    bench_receipts.add_argument("--seconds", type=float, default=10.0, help="measured (10)")
    bench_receipts.add_argument("--connections", type=int, default=64, help="keep-alive (64)")
    bench_receipts.add_argument("--json", action="store_true", help="print a JSON object")
    bench_receipts.set_defaults(func=_cmd_bench_receipts_api)
    bench_reconciler = bench_sub.add_parser(
        "reconciler", help="events/s of one `pushline reconciler` draining a pre-produced backlog"
    )
    bench_reconciler.add_argument("--events", type=int, default=50_000, help="input events")
    bench_reconciler.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the reconciler may take (600)"
    )
    bench_reconciler.add_argument("--json", action="store_true", help="print a JSON object")
    bench_reconciler.set_defaults(func=_cmd_bench_reconciler)

    reconciler = sub.add_parser(
        "reconciler", help="join outcomes with receipts; statuses, fallbacks, invalid tokens"
    )
    reconciler.set_defaults(func=_cmd_reconciler)

    demo = sub.add_parser("demo", help="run the pipeline on the embedded stack and report")
    demo.add_argument("--notifications", type=int, default=20_000)
    demo.add_argument(
        "--receipt-deadline",
        type=float,
        default=30.0,
        help="seconds a device may take to send its receipt before fallback (30)",
    )
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    config = sub.add_parser("config", help="configuration helpers")
    config_sub = config.add_subparsers(dest="what", required=True, parser_class=_Parser)
    reference = config_sub.add_parser(
        "reference", help="every environment variable, its default and meaning (Markdown)"
    )
    reference.set_defaults(func=_cmd_config_reference)

    dlq = sub.add_parser("dlq", help="list, show and replay the dead-letter topic (push.dlq)")
    dlq.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait on the broker (10)"
    )
    dlq_sub = dlq.add_subparsers(dest="what", required=True, parser_class=_Parser)
    dlq_filters = _Parser(add_help=False)
    dlq_filters.add_argument("--source-topic", metavar="TOPIC", help="only entries from TOPIC")
    dlq_filters.add_argument("--error-class", metavar="CLASS", help="only entries of CLASS")
    dlq_list = dlq_sub.add_parser(
        "list", parents=[dlq_filters], help="one line per entry (ID is PARTITION:OFFSET)"
    )
    dlq_list.add_argument("--limit", type=int, metavar="N", help="show the oldest N")
    dlq_list.add_argument("--json", action="store_true", help="print a JSON array")
    dlq_show = dlq_sub.add_parser("show", help="one entry: headers, hex dump, decoded value")
    dlq_show.add_argument("id", metavar="ID", help="PARTITION:OFFSET, as `dlq list` prints")
    dlq_show.add_argument("--bytes", type=int, default=256, help="bytes to hex-dump (256)")
    dlq_show.add_argument("--json", action="store_true", help="print a JSON object")
    dlq_replay = dlq_sub.add_parser(
        "replay",
        parents=[dlq_filters],
        help="re-produce entries unchanged to their source topic and record that in the DLQ",
    )
    dlq_replay.add_argument("ids", nargs="*", metavar="ID", help="PARTITION:OFFSET")
    dlq_replay.add_argument("--all", action="store_true", help="every (filtered) entry")
    dlq_replay.add_argument("--force", action="store_true", help="replay again if replayed")
    dlq_replay.add_argument("--dry-run", action="store_true", help="print what would be replayed")
    dlq.set_defaults(func=_cmd_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValidationError, ConfigError) as exc:
        print(f"pushline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PushlineError as exc:
        print(f"pushline: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug of ours, not a user mistake: still one line, unless PUSHLINE_DEBUG asks for the trace.
        if os.environ.get("PUSHLINE_DEBUG"):
            raise
        print(f"pushline: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
