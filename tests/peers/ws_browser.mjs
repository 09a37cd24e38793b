#!/usr/bin/env node
// Headless Debian Chromium, driven by playwright-core, opening a websocket to the server the way
// a browser dashboard does: the bearer token travels as a subprotocol, since browsers cannot set
// an Authorization header on a websocket. See shared/reference/real-clients.md §3.
//
// Usage:
//   node ws_browser.mjs --url wss://127.0.0.1:PORT/api/v1/namespaces/NS/pods/POD/log?follow=true
//        [--token TOKEN | --raw-token-protocol VALUE] [--protocol base64.binary.k8s.io]
//        [--messages N] [--timeout-ms MS] [--ca CA.crt]
//
//   --token T               offer "base64url.bearer.authorization.k8s.io.<base64url(T), unpadded>"
//                           first, computed in the page (btoa over the UTF-8 bytes).
//   --raw-token-protocol V  offer V verbatim as the first subprotocol instead (malformed-token tests).
//   --protocol P[,P2...]    the other subprotocol(s) offered after the token one
//                           (default base64.binary.k8s.io; "none" offers nothing else).
//   --messages N            stop after N messages (default 1), then close with 1000.
//   --timeout-ms MS         budget for the websocket session, from `new WebSocket` to the result
//                           (default 10000). Browser launch has its own 30 s limit, and a watchdog
//                           kills the process at MS + 45 s.
//   --ca FILE               trust FILE through a throwaway NSS db ($HOME/.pki/nssdb, made with
//                           certutil) so Chromium really validates the chain. Without it the
//                           context uses ignoreHTTPSErrors and --ignore-certificate-errors.
// Env: CHROMIUM_PATH overrides /usr/bin/chromium (Debian's package; no browser is ever downloaded).
//
// The page is about:blank, so the handshake carries `Origin: null`. In the page it runs:
//   new WebSocket(url, ["base64url.bearer.authorization.k8s.io." + b64url(token), "base64.binary.k8s.io"])
// Messages: text frames are base64-decoded when the *negotiated* protocol (ws.protocol) is
// base64.binary.k8s.io, binary frames are decoded as UTF-8, other text frames are kept as is.
//
// Prints one JSON line on stdout:
//   {"opened":bool,"protocol":str,"messages":[str],"closeCode":int|null,"closeReason":str,
//    "wasClean":bool|null,"timedOut":bool,"error":str|null,"console":[str],"trust":"ignore"|"nss"}
// "error" is the page-side failure (constructor SyntaxError, an `error` event, a bad base64 frame).
// Exit 0 whenever the browser ran, whatever happened to the websocket; 1 when the harness itself
// failed (launch, page crash: JSON with "harnessError"); 2 on bad arguments.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const LAUNCH_TIMEOUT_MS = 30000;

function usage(msg) {
  process.stderr.write(`ws_browser.mjs: ${msg}\n` +
    'usage: node ws_browser.mjs --url wss://... [--token T | --raw-token-protocol V] ' +
    '[--protocol P[,P2]] [--messages N] [--timeout-ms MS] [--ca FILE]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { protocols: ['base64.binary.k8s.io'], messages: 1, timeoutMs: 10000 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--url': o.url = value(); break;
      case '--token': o.token = value(); break;
      case '--raw-token-protocol': o.rawTokenProtocol = value(); break;
      case '--protocol': {
        const v = value();
        o.protocols = v === 'none' || v === '' ? [] : v.split(',');
        break;
      }
      case '--messages': o.messages = Number.parseInt(value(), 10); break;
      case '--timeout-ms': o.timeoutMs = Number.parseInt(value(), 10); break;
      case '--ca': o.ca = value(); break;
      case '-h': case '--help': usage('help'); break;
      default: usage(`unknown argument ${flag}`);
    }
  }
  if (!o.url || !/^wss?:\/\//.test(o.url)) usage('--url wss://... is required');
  if (o.token !== undefined && o.rawTokenProtocol !== undefined) {
    usage('--token and --raw-token-protocol exclude each other');
  }
  if (!(o.messages >= 0)) usage('--messages must be a number >= 0');
  if (!(o.timeoutMs > 0)) usage('--timeout-ms must be a positive number');
  return o;
}

// Runs inside the page. Keep it to what a browser app would write.
async function pageSession({ url, token, rawTokenProtocol, protocols, messages, timeoutMs }) {
  const b64url = (s) => {
    const bytes = new TextEncoder().encode(s);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  const offered = [];
  if (rawTokenProtocol !== undefined) offered.push(rawTokenProtocol);
  else if (token !== undefined) offered.push('base64url.bearer.authorization.k8s.io.' + b64url(token));
  offered.push(...protocols);

  const r = {
    opened: false, protocol: '', messages: [], closeCode: null, closeReason: '',
    wasClean: null, timedOut: false, error: null,
  };
  let ws;
  try {
    ws = new WebSocket(url, offered);
  } catch (e) {
    r.error = `${e.name}: ${e.message}`;
    return r;
  }
  ws.binaryType = 'arraybuffer';
  const utf8 = new TextDecoder('utf-8');
  return await new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve(r);
    };
    // After we close, wait a little for the server's close frame, then report anyway.
    const closeAndFinish = () => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        ws.close(1000, 'done');
        setTimeout(finish, 2000);
      } else {
        finish();
      }
    };
    const timer = setTimeout(() => {
      r.timedOut = true;
      closeAndFinish();
    }, timeoutMs);
    ws.onopen = () => {
      r.opened = true;
      r.protocol = ws.protocol;
      if (messages === 0) closeAndFinish();
    };
    ws.onmessage = (ev) => {
      if (r.messages.length >= messages) return;
      let text;
      if (typeof ev.data === 'string') {
        if (ws.protocol === 'base64.binary.k8s.io') {
          try {
            const bin = atob(ev.data);
            text = utf8.decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
          } catch (e) {
            r.error = r.error ?? `message ${r.messages.length + 1} is not base64: ${JSON.stringify(ev.data)}`;
            text = ev.data;
          }
        } else {
          text = ev.data;
        }
      } else {
        text = utf8.decode(new Uint8Array(ev.data));
      }
      r.messages.push(text);
      if (r.messages.length >= messages) closeAndFinish();
    };
    ws.onerror = () => {
      // The page never learns why (HTTP status, TLS): see "console" for Chromium's reason.
      r.error = r.error ?? 'websocket error event';
    };
    ws.onclose = (ev) => {
      r.closeCode = ev.code;
      r.closeReason = ev.reason;
      r.wasClean = ev.wasClean;
      finish();
    };
  });
}

function makeNssHome(ca) {
  const home = mkdtempSync(join(tmpdir(), 'ws-browser-home-'));
  const db = `sql:${join(home, '.pki', 'nssdb')}`;
  spawnSync('mkdir', ['-p', join(home, '.pki', 'nssdb')]);
  for (const args of [
    ['-d', db, '-N', '--empty-password'],
    ['-d', db, '-A', '-t', 'C,,', '-n', 'kube-authn-test-ca', '-i', ca],
  ]) {
    const p = spawnSync('certutil', args, { encoding: 'utf8' });
    if (p.status !== 0) {
      throw new Error(`certutil ${args.join(' ')} failed: ${p.stderr || p.error}`);
    }
  }
  return home;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const watchdog = setTimeout(() => {
    process.stdout.write(JSON.stringify({ harnessError: 'watchdog: ws_browser.mjs ran too long' }) + '\n');
    process.exit(1);
  }, opts.timeoutMs + 45000);
  watchdog.unref();

  const trust = opts.ca ? 'nss' : 'ignore';
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ];
  if (trust === 'ignore') args.push('--ignore-certificate-errors');

  let home;
  let browser;
  const consoleLines = [];
  let exitCode = 0;
  try {
    // Checked first: a failed launch leaves playwright's temp profile dirs behind in /tmp.
    accessSync(CHROMIUM, constants.X_OK);
    const env = { ...process.env };
    if (trust === 'nss') {
      home = makeNssHome(opts.ca);
      env.HOME = home;
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args,
      env,
      timeout: LAUNCH_TIMEOUT_MS,
    });
    const context = await browser.newContext({ ignoreHTTPSErrors: trust === 'ignore' });
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const result = await page.evaluate(pageSession, {
      url: opts.url,
      token: opts.token,
      rawTokenProtocol: opts.rawTokenProtocol,
      protocols: opts.protocols,
      messages: opts.messages,
      timeoutMs: opts.timeoutMs,
    });
    // Chromium's console line on a refused handshake ("WebSocket connection to '...' failed:
    // ...", which says why) can arrive after the close event: wait for it (bounded).
    if (!result.opened) {
      const deadline = Date.now() + 10000;
      while (!consoleLines.some((l) => l.includes('WebSocket connection to'))
        && Date.now() < deadline) {
        await page.waitForTimeout(20);
      }
    }
    process.stdout.write(JSON.stringify({ ...result, console: consoleLines, trust }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({
      harnessError: `${e.name}: ${e.message}`, console: consoleLines, trust,
    }) + '\n');
    exitCode = 1;
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (home) rmSync(home, { recursive: true, force: true });
  }
  process.exit(exitCode);
}

main();
