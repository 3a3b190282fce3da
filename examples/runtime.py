#!/usr/bin/env python3
"""A minimal AgentOwl runtime (docs/runtime-protocol.md): answers hello, takes configure, echoes tasks."""
import json, os, socket, threading

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["AGENTOWL_RUNTIME_SOCKET"])
lock = threading.Lock()

def send(msg):
    with lock:
        sock.sendall((json.dumps(msg) + "\n").encode())

def heartbeat():
    while True:
        send({"type": "heartbeat"})
        threading.Event().wait(5)

threading.Thread(target=heartbeat, daemon=True).start()
config = None
for line in sock.makefile("r", encoding="utf-8"):
    msg = json.loads(line)
    kind, rid = msg["type"], msg.get("id")
    if kind == "shutdown":
        break
    if rid is None or kind == "result":
        continue  # notifications (tool.result, error) and answers to requests we never sent
    if kind == "hello":
        result = {"token": os.environ["AGENTOWL_RUNTIME_TOKEN"]}
    elif kind == "configure":
        config, result = msg, {}
    elif kind == "task" and config:
        result = {"status": "done", "output": "echo: " + json.dumps(msg["event"].get("data", {}))}
    else:
        send({"id": rid, "type": "result", "ok": False, "error": {"code": "unsupported", "message": kind}})
        continue
    send({"id": rid, "type": "result", "ok": True, "result": result})
