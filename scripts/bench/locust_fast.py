"""Locust's fastest client (FastHttpUser), no wait: the throughput baseline for loadgen.

The same work as `loadgen --mode loop --wait 0ms..0ms`: POST / a record with an
Idempotency-Key, then GET /, cycling through data/traffic.json.
"""
import itertools
import json
import os
import uuid

from locust import FastHttpUser, constant, task

RECORDS = [json.dumps(r) for r in json.load(open(os.environ.get("TRAFFIC", "data/traffic.json")))]


class Replay(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.records = itertools.cycle(RECORDS)
        self.prefix = uuid.uuid4().hex

    @task
    def post(self):
        self.client.post("/", data=next(self.records),
                         headers={"content-type": "application/json",
                                  "idempotency-key": f"{self.prefix}-{uuid.uuid4().hex}"})

    @task
    def get(self):
        self.client.get("/")
