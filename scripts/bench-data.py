#!/usr/bin/env python3
"""Writes the benchmark inputs into DIR (shared by bench-load.sh and bench-instructions.sh).

tokens.csv     100,000 tokens: token,user-N,uid-N,"group-a,group-(N % 100)"
passwords.csv  10,000 users:   password-N,user-N,uid-N,"group-a"
tokens.lua     wrk script: GET /healthz with a random bearer token (every 10th of the file)
token-one.lua  wrk script: the same with one token of the file on every request (one client:
               its row stays in the CPU caches, so this measures the lookup without misses)
passwords.lua  wrk script: GET /healthz with random basic credentials
none.lua       wrk script: the same request shape with one fixed bearer token (the baseline)
"""
import base64
import sys

d = sys.argv[1]
REQUEST = ('math.randomseed(42)\nrequest = function()\n  return wrk.format("GET", "/healthz", '
           '{["Authorization"] = tokens[math.random(#tokens)]})\nend\n')
with open(f"{d}/tokens.csv", "w") as f, open(f"{d}/tokens.lua", "w") as lua:
    lua.write("tokens = {\n")
    for i in range(100_000):
        t = f"{i * 0x9E3779B97F4A7C15 % (1 << 64):016x}{i:016x}"
        f.write(f'{t},user-{i},uid-{i},"group-a,group-{i % 100}"\n')
        if i % 10 == 0:
            lua.write(f'"Bearer {t}",\n')
    lua.write("}\n" + REQUEST)
with open(f"{d}/token-one.lua", "w") as lua:
    t = f"{4321 * 0x9E3779B97F4A7C15 % (1 << 64):016x}{4321:016x}"
    lua.write('request = function()\n  return wrk.format("GET", "/healthz", '
              f'{{["Authorization"] = "Bearer {t}"}})\nend\n')
with open(f"{d}/passwords.csv", "w") as f, open(f"{d}/passwords.lua", "w") as lua:
    lua.write("tokens = {\n")
    for i in range(10_000):
        f.write(f'password-{i:08},user-{i},uid-{i},"group-a"\n')
        b = base64.b64encode(f"user-{i}:password-{i:08}".encode()).decode()
        lua.write(f'"Basic {b}",\n')
    lua.write("}\n" + REQUEST)
with open(f"{d}/none.lua", "w") as lua:
    lua.write('request = function()\n  return wrk.format("GET", "/healthz", '
              '{["Authorization"] = "Bearer 0123456789abcdef0123456789abcdef"})\nend\n')
