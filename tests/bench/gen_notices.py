#!/usr/bin/env python3
"""Writes N notices of about SIZE bytes each as NDJSON (the benchmark input).

Deterministic: the same N and SIZE always give the same file."""
import json
import random
import sys

n = int(sys.argv[1])
size = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
rng = random.Random(2017)
words = ("gobierno digital cooperación Perú Brasil delegación foro ministerio "
         "e-government cooperation centre lecture budget transport safety São Paulo "
         "Arequipa Lima Seoul Anyang forum memorando").split()
for i in range(n):
    notice = {
        "id": "01900000-0000-7000-8000-%012x" % i,
        "category": "news",
        "published_at": "2017-06-20T09:00:00+09:00",
        "regions": ["PE", "BR"] if i % 2 else ["KR"],
        "title": {"en": "Notice %d: e-Government cooperation with Latin America" % i},
        "body": {"en": ""},
        "source": "Ministry of the Interior",
    }
    base = len(json.dumps(notice, ensure_ascii=False))
    body = []
    while base + len(" ".join(body)) < size - 110:  # room for priority/lang/supersedes added by the CLI
        body.append(rng.choice(words))
    notice["body"]["en"] = " ".join(body)
    print(json.dumps(notice, ensure_ascii=False))
