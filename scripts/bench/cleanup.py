"""Removes what a benchmark left in the brokers: its queues (main and dead-letter) and its
JetStream streams (main and dead-letter). Shared by the bench-* scripts."""
import socket
import subprocess


def delete_queues(*names):
    for name in names:
        for queue in (name, f"{name}.dead"):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def delete_streams(*names, port=4222):
    """JetStream's API over the plain NATS protocol: no nats CLI needed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.recv(4096)  # INFO
        commands = "".join(f"PUB $JS.API.STREAM.DELETE.{stream} 0\r\n\r\n"
                           for name in names for stream in (name, f"{name}_DEAD"))
        s.sendall(f"CONNECT {{\"verbose\":false}}\r\n{commands}PING\r\n".encode())
        s.recv(4096)  # PONG
