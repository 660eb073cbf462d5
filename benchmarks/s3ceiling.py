#!/usr/bin/env python3
"""The raw boto3 ceiling of an S3 endpoint: small objects PUT, then GET, per second.

Run by ``run.py --only remote`` with the Python that has boto3 (datavc's .venv) against the
moto server it started; prints one JSON object. The objects are random bytes of --size,
moved by --jobs threads sharing one client (as datavc's S3 remote does), with no hashing,
no existence checks and nothing written to disk: what the server and boto3 alone allow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--bucket", required=True, help="created here")
    p.add_argument("--objects", type=int, default=3000)
    p.add_argument("--size", type=int, default=4096, help="bytes per object")
    p.add_argument("--jobs", type=int, default=16)
    args = p.parse_args(argv)

    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(max_pool_connections=args.jobs))
    client.create_bucket(Bucket=args.bucket)
    body = os.urandom(args.size)
    keys = [f"ceiling/{i:08d}" for i in range(args.objects)]

    def put(key: str) -> None:
        client.put_object(Bucket=args.bucket, Key=key, Body=body)

    def get(key: str) -> int:
        return len(client.get_object(Bucket=args.bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(args.jobs) as pool:
        t0 = time.perf_counter()
        list(pool.map(put, keys))
        t1 = time.perf_counter()
        got = sum(pool.map(get, keys))
        t2 = time.perf_counter()
    if got != args.size * args.objects:
        sys.exit(f"read back {got} bytes, expected {args.size * args.objects}")
    print(json.dumps({"objects": args.objects, "size": args.size, "jobs": args.jobs,
                      "put_s": t1 - t0, "get_s": t2 - t1,
                      "put_per_s": args.objects / (t1 - t0),
                      "get_per_s": args.objects / (t2 - t1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
