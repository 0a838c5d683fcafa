"""The original traffic.py's behaviour with Locust's HttpUser: each user sends its own copy
of data/traffic.json in random order (POST /) plus GET /, waiting 0.1-0.9 s after each task,
and stops when its copy is exhausted. The mission-load baseline for loadgen's defaults.
"""
import json
import os
import random
import uuid

from locust import HttpUser, between, task
from locust.exception import StopUser

RECORDS = [json.dumps(r) for r in json.load(open(os.environ.get("TRAFFIC", "data/traffic.json")))]


class Replay(HttpUser):
    wait_time = between(0.1, 0.9)

    def on_start(self):
        self.records = random.sample(RECORDS, len(RECORDS))
        self.prefix = uuid.uuid4().hex

    @task
    def post(self):
        if not self.records:
            raise StopUser()
        self.client.post("/", data=self.records.pop(),
                         headers={"content-type": "application/json",
                                  "idempotency-key": f"{self.prefix}-{len(self.records)}"})

    @task
    def get(self):
        self.client.get("/")
