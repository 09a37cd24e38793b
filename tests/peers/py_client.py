#!/usr/bin/env python3
"""Drive the official Python `kubernetes` client (PyPI, pinned in requirements.txt) against a
kube-apiserver look-alike, for the kube-authn e2e tests.

Usage (run with $REPO/.peers/venv/bin/python):

  py_client.py --server URL --ca CA [--token T | --basic USER:PASS | --cert CRT --key KEY]
               [--timeout S] COMMAND ...

  COMMAND:
    whoami                                   POST /apis/authentication.k8s.io/v1/selfsubjectreviews
    version                                  GET  /version
    list-pods NS                             GET  /api/v1/namespaces/NS/pods
    create-pod NS NAME                       POST /api/v1/namespaces/NS/pods
    delete-pod NS NAME                       DELETE /api/v1/namespaces/NS/pods/NAME
    watch-pods NS --max-events N [--timeout S]      GET ...?watch=true (chunked HTTP)
    log POD NS --lines N [--timeout S] [--no-follow]  GET .../pods/POD/log?follow=true (chunked HTTP)

Authentication is set the way shared/reference/real-clients.md §1 shows: bearer and basic both
go through `Configuration.api_key["authorization"]` (37.x ignores `username`/`password`), a
client certificate through `cert_file`/`key_file`. No flag: no credentials (anonymous).

Output: exactly one JSON document on stdout.
  success (exit 0):
    whoami      {"username": str, "groups": [str], "uid": str, "extra": {str: [str]}}
    version     {"gitVersion": str, "major": str, "minor": str, "platform": str}
    list-pods   {"items": [pod names], "resourceVersion": str}
    create-pod  {"name": str, "namespace": str, "uid": str, "resourceVersion": str}
    delete-pod  {"name": str, "deleted": true}
    watch-pods  {"events": [{"type": str, "name": str, "resourceVersion": str}], "timedOut": bool}
    log         {"lines": [str], "timedOut": bool}
  watch-pods/log stop after N events/lines, or when the server ends the stream, or at --timeout
  (then "timedOut": true, still exit 0: the caller asserts on what arrived).
  failure:
    exit 1  HTTP error:      {"error": str, "status": int, "reason": str, "body": <json|str|null>}
    exit 3  transport error: {"error": str, "status": null}   (refused, TLS, timeout, bad response)
    exit 2  usage error (argparse, on stderr)
Every run is bounded by --timeout (default 10 s): a SIGALRM deadline over all network work
(imports excluded), plus urllib3 connect/read timeouts on each request. No retries.
Note: the client asks for GET /version/ (trailing slash), not /version.
"""

import argparse
import base64
import json
import signal
import sys
import time


class Deadline(Exception):
    """Raised by the SIGALRM handler when the whole run exceeds its budget."""


def _on_alarm(_signum, _frame):
    raise Deadline()


def emit(doc):
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()


def build_api_client(args):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = args.server.rstrip("/")
    cfg.ssl_ca_cert = args.ca
    cfg.verify_ssl = True
    cfg.retries = 0  # fail fast: a test must see the first answer, not a retried one
    if args.token is not None:
        cfg.api_key = {"authorization": "Bearer " + args.token}
    elif args.basic is not None:
        raw = base64.b64encode(args.basic.encode("utf-8")).decode("ascii")
        cfg.api_key = {"authorization": "Basic " + raw}
    if args.cert is not None:
        cfg.cert_file = args.cert
        cfg.key_file = args.key
    return client.ApiClient(cfg)


def request_timeout(args):
    # (connect, read): read bounds each wait for bytes, the alarm bounds the whole run.
    return (min(5.0, args.timeout), args.timeout)


def cmd_whoami(api, args):
    from kubernetes import client

    review = client.AuthenticationV1Api(api).create_self_subject_review(
        body=client.V1SelfSubjectReview(), _request_timeout=request_timeout(args)
    )
    info = review.status.user_info if review.status is not None else None
    if info is None:
        raise ValueError("selfsubjectreview has no status.userInfo")
    return {
        "username": info.username or "",
        "groups": list(info.groups or []),
        "uid": info.uid or "",
        "extra": {k: list(v or []) for k, v in (info.extra or {}).items()},
    }


def cmd_version(api, args):
    from kubernetes import client

    v = client.VersionApi(api).get_code(_request_timeout=request_timeout(args))
    return {"gitVersion": v.git_version, "major": v.major, "minor": v.minor, "platform": v.platform}


def cmd_list_pods(api, args):
    from kubernetes import client

    pods = client.CoreV1Api(api).list_namespaced_pod(
        args.namespace, _request_timeout=request_timeout(args)
    )
    return {
        "items": [p.metadata.name for p in pods.items],
        "resourceVersion": (pods.metadata.resource_version if pods.metadata else None) or "",
    }


def cmd_create_pod(api, args):
    from kubernetes import client

    body = client.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=client.V1ObjectMeta(name=args.name),
        spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=args.image)]),
    )
    pod = client.CoreV1Api(api).create_namespaced_pod(
        args.namespace, body, _request_timeout=request_timeout(args)
    )
    return {
        "name": pod.metadata.name,
        "namespace": pod.metadata.namespace or args.namespace,
        "uid": pod.metadata.uid or "",
        "resourceVersion": pod.metadata.resource_version or "",
    }


def cmd_delete_pod(api, args):
    from kubernetes import client

    # The server may answer with the Pod or a Status; take the raw body and don't care which.
    resp = client.CoreV1Api(api).delete_namespaced_pod(
        args.name, args.namespace, _request_timeout=request_timeout(args), _preload_content=False
    )
    resp.read()
    return {"name": args.name, "deleted": True}


def cmd_watch_pods(api, args):
    from kubernetes import client, watch

    events, timed_out = [], False
    w = watch.Watch()
    try:
        # timeout_seconds also turns off the watch helper's reconnect loop.
        for ev in w.stream(
            client.CoreV1Api(api).list_namespaced_pod,
            args.namespace,
            timeout_seconds=max(1, int(args.timeout)),
            _request_timeout=request_timeout(args),
        ):
            obj = ev.get("object")
            meta = getattr(obj, "metadata", None)
            events.append(
                {
                    "type": ev["type"],
                    "name": getattr(meta, "name", None) or "",
                    "resourceVersion": getattr(meta, "resource_version", None) or "",
                }
            )
            if len(events) >= args.max_events:
                w.stop()
                break
    except (Deadline, TimeoutError):
        timed_out = True
    except Exception as e:  # urllib3 read timeout while waiting for the next event
        if not is_timeout(e):
            raise
        timed_out = True
    return {"events": events, "timedOut": timed_out}


def cmd_log(api, args):
    from kubernetes import client, watch

    lines, timed_out = [], False
    w = watch.Watch()
    try:
        # Watch.stream on a *_log function sets follow=True and yields decoded lines.
        extra = {} if args.tail is None else {"tail_lines": args.tail}
        if args.no_follow:
            text = client.CoreV1Api(api).read_namespaced_pod_log(
                args.pod, args.namespace, _request_timeout=request_timeout(args), **extra
            )
            lines = text.splitlines()[: args.lines]
        else:
            for line in w.stream(
                client.CoreV1Api(api).read_namespaced_pod_log,
                args.pod,
                args.namespace,
                _request_timeout=request_timeout(args),
                **extra,
            ):
                lines.append(line)
                if len(lines) >= args.lines:
                    w.stop()
                    break
    except (Deadline, TimeoutError):
        timed_out = True
    except Exception as e:
        if not is_timeout(e):
            raise
        timed_out = True
    return {"lines": lines, "timedOut": timed_out}


def is_timeout(e):
    import urllib3

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError, Deadline)):
            return True
        e = getattr(e, "reason", None) if isinstance(e, urllib3.exceptions.MaxRetryError) else (
            e.__cause__ or e.__context__
        )
    return False


def parse_args(argv):
    p = argparse.ArgumentParser(description="Official Python kubernetes client as an e2e test peer")
    p.add_argument("--server", required=True, help="https://127.0.0.1:PORT")
    p.add_argument("--ca", required=True, help="CA bundle that signs the server certificate")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help="bearer token")
    auth.add_argument("--basic", metavar="USER:PASS", help="HTTP basic credentials")
    p.add_argument("--cert", help="client certificate (PEM); needs --key")
    p.add_argument("--key", help="client private key (PEM)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("whoami")
    sub.add_parser("version")
    s = sub.add_parser("list-pods")
    s.add_argument("namespace")
    s = sub.add_parser("create-pod")
    s.add_argument("namespace")
    s.add_argument("name")
    s.add_argument("--image", default="busybox")
    s = sub.add_parser("delete-pod")
    s.add_argument("namespace")
    s.add_argument("name")
    s = sub.add_parser("watch-pods")
    s.add_argument("namespace")
    s.add_argument("--max-events", type=int, required=True)
    s.add_argument("--timeout", type=float, default=argparse.SUPPRESS)
    s = sub.add_parser("log")
    s.add_argument("pod")
    s.add_argument("namespace")
    s.add_argument("--lines", type=int, required=True)
    s.add_argument("--timeout", type=float, default=argparse.SUPPRESS)
    s.add_argument("--no-follow", action="store_true")
    s.add_argument("--tail", type=int, default=None, help="tailLines: lines of the backlog")
    args = p.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        p.error("--cert and --key go together")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


COMMANDS = {
    "whoami": cmd_whoami,
    "version": cmd_version,
    "list-pods": cmd_list_pods,
    "create-pod": cmd_create_pod,
    "delete-pod": cmd_delete_pod,
    "watch-pods": cmd_watch_pods,
    "log": cmd_log,
}


def main(argv):
    args = parse_args(argv)
    import kubernetes.client  # noqa: F401  (slow import: keep it out of the deadline)
    import kubernetes.watch  # noqa: F401
    from kubernetes.client.exceptions import ApiException

    signal.signal(signal.SIGALRM, _on_alarm)
    # Deadline for all network work, TLS handshakes included.
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    started = time.monotonic()
    try:
        api = build_api_client(args)
        try:
            doc = COMMANDS[args.command](api, args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except ApiException as e:
        emit(
            {
                "error": "HTTP %s %s" % (e.status, e.reason),
                "status": e.status,
                "reason": e.reason,
                "body": _body(e.body),
            }
        )
        return 1
    except Deadline:
        emit({"error": "timeout: no answer within %.1fs" % args.timeout, "status": None})
        return 3
    except Exception as e:  # transport, TLS, timeouts, responses the typed models reject
        emit(
            {
                "error": "%s: %s" % (type(e).__name__, e),
                "status": None,
                "elapsed": round(time.monotonic() - started, 3),
            }
        )
        return 3
    emit(doc)
    return 0


def _body(body):
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return body


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
