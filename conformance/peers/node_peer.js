// Node `ws` as a real peer of `sonar` (run by `cargo xtask conformance`).
//
//   node node_peer.js client URL   checks against `sonar serve --ping-interval 0.2 --ping-timeout 2`
//   node node_peer.js server       serves on 127.0.0.1:0, prints `port N`, then one result line
//                                  per check for each connection `sonar client` makes
//
// Every result is one stdout line: `ok CHECK detail` or `FAIL CHECK: reason`. Every wait is
// bounded. ws itself rejects a pong without FIN ("Invalid WebSocket frame: FIN must be set"),
// so every pong check also checks FIN.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20];
const PINGS = [Buffer.from([0x0d, 0x90, 0x0f, 0x00]), Buffer.alloc(0), Buffer.from([...Array(125).keys()])];
const LIMIT = 5000;
let failures = 0;

function report(check, ok, detail = '') {
  if (ok) {
    console.log(`ok ${check} ${detail}`.trimEnd());
  } else {
    failures += 1;
    console.log(`FAIL ${check}: ${detail}`);
  }
}

function payload(size, text) {
  if (text) return 'sonar-\u00e9-'.repeat(Math.floor(size / 8) + 1).slice(0, size);
  return crypto.randomBytes(size);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function bounded(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), LIMIT);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/// Wraps a socket: a queue of received messages, counters of pings and pongs, the close.
function track(ws) {
  const t = { queue: [], waiters: [], pings: 0, pongs: [], error: null };
  ws.on('message', (data, isBinary) => {
    const m = isBinary ? { binary: true, data } : { binary: false, data: data.toString('utf8') };
    const w = t.waiters.shift();
    if (w) w(m);
    else t.queue.push(m);
  });
  ws.on('ping', () => {
    t.pings += 1;
  });
  ws.on('pong', (data) => t.pongs.push(Buffer.from(data)));
  ws.on('error', (e) => {
    t.error = e;
  });
  t.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  t.recv = () => bounded(new Promise((resolve) => {
    const m = t.queue.shift();
    if (m) resolve(m);
    else t.waiters.push(resolve);
  }), 'a message');
  return t;
}

function same(m, data, text) {
  if (m.binary === text) return false;
  return text ? m.data === data : Buffer.compare(m.data, data) === 0;
}

/// permessage-deflate was agreed in the opening handshake (`perMessageDeflate: true`).
function deflateCheck(ws) {
  report('deflate', ws.extensions.startsWith('permessage-deflate'), `agreed: ${JSON.stringify(ws.extensions)}`);
}

async function echoAndPing(ws, t) {
  deflateCheck(ws);
  for (const text of [true, false]) {
    for (const size of SIZES) {
      const data = payload(size, text);
      ws.send(data, { binary: !text });
      const back = await t.recv();
      if (!same(back, data, text)) {
        report('echo', false, `${size} ${text ? 'text' : 'binary'} not echoed exactly`);
        return false;
      }
    }
  }
  report('echo', true, `text+binary sizes ${JSON.stringify(SIZES)}`);
  for (const data of PINGS) {
    const before = t.pongs.length;
    ws.ping(data);
    const deadline = Date.now() + LIMIT;
    while (t.pongs.length === before && Date.now() < deadline && !t.error) await sleep(5);
    const pong = t.pongs[before];
    if (!pong || Buffer.compare(pong, data) !== 0) {
      report('their-ping', false, `no identical pong for ${data.length} B (${t.error || 'no pong'})`);
      return false;
    }
  }
  report('their-ping', true, 'pongs identical (FIN set) for 4 B 0d900f00, 0 B, 125 B');
  return true;
}

function open(url, options = {}) {
  const ws = new WebSocket(url, { maxPayload: 1 << 21, perMessageDeflate: true, ...options });
  const t = track(ws);
  return bounded(new Promise((resolve, reject) => {
    ws.on('open', () => resolve([ws, t]));
    ws.on('error', reject);
  }), 'open');
}

/// ws has no keepalive of its own; its documented heartbeat is ping() on an interval.
function heartbeat(ws, t, ms) {
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    ws.ping(Buffer.from(`hb${n}`));
  }, ms);
  return () => {
    clearInterval(timer);
    return { sent: n, answered: t.pongs.filter((p, i) => p.toString() === `hb${i + 1}`).length };
  };
}

async function client(url) {
  {
    const [ws, t] = await open(url);
    await echoAndPing(ws, t);
    ws.close();
    await bounded(t.closed, 'close');
  }
  {
    const [ws, t] = await open(url);
    await sleep(1000);
    ws.send('after idle');
    const back = await t.recv();
    report('our-keepalive', back.data === 'after idle' && t.pings >= 2, `${t.pings} pings from sonar in 1 s idle`);
    ws.close();
    await bounded(t.closed, 'close');
  }
  {
    const [ws, t] = await open(url);
    const stop = heartbeat(ws, t, 200);
    await sleep(1200);
    const hb = stop();
    ws.send('still here');
    const back = await t.recv();
    report('their-keepalive', back.data === 'still here' && hb.answered === hb.sent && hb.sent >= 4,
      `${hb.answered}/${hb.sent} heartbeat pings answered in 1.2 s`);
    ws.close();
    await bounded(t.closed, 'close');
  }
  for (const [code, reason] of [[1000, ''], [4001, 'custom']]) {
    const [ws, t] = await open(url);
    ws.close(code, reason);
    const got = await bounded(t.closed, 'close');
    report(`close-${code}`, got.code === code, `sonar echoed ${got.code} ${JSON.stringify(got.reason)}`);
  }
  {
    const [, t] = await open(url);
    console.log('holding');
    const got = await bounded(t.closed, 'sonar shutdown');
    report('sonar-close', got.code === 1001, `sonar closed with ${got.code} ${JSON.stringify(got.reason)}`);
  }
}

async function onConnection(ws, req) {
  const t = track(ws);
  const stop = heartbeat(ws, t, 200);
  const path = req.url;
  try {
    if (path === '/echo') {
      if (await echoAndPing(ws, t)) ws.close(1000);
      await bounded(t.closed, 'close');
    } else if (path === '/idle' || path === '/their') {
      // /idle: sonar client --ping-interval 0.2, 1 s of idle stdin, one line, EOF; our
      // heartbeat is off so sonar's pings are not deferred by inbound traffic.
      // /their: sonar client without keepalive, 1.2 s idle under our 200 ms heartbeat.
      const mine = path === '/idle' ? stop() : null;
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      const got = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve({ code: 'none', reason: '' }), 10000);
        t.closed.then((c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      if (mine) {
        report('our-keepalive', t.pings >= 2, `${t.pings} pings from sonar in 1 s idle`);
        report('close-1000', got.code === 1000, `sonar client closed with ${got.code}`);
      } else {
        const hb = stop();
        report('their-keepalive', hb.sent >= 4 && hb.answered >= hb.sent - 1 && got.code === 1000,
          `${hb.answered}/${hb.sent} heartbeat pings answered, closed ${got.code}`);
      }
    } else if (path === '/close4001') {
      ws.close(4001, 'custom');
      const got = await bounded(t.closed, 'close');
      report('sent-4001', got.code === 4001, `close handshake ${got.code}`);
    } else {
      report('path', false, path);
    }
  } catch (e) {
    report(path.replace('/', '') || 'connection', false, String(e));
  } finally {
    stop();
  }
}

function server() {
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1', port: 0, maxPayload: 1 << 21, perMessageDeflate: true,
  });
  wss.on('listening', () => console.log(`port ${wss.address().port}`));
  wss.on('connection', (ws, req) => {
    onConnection(ws, req);
  });
  // The driver closes our stdin when it is done.
  process.stdin.resume();
  process.stdin.on('end', () => {
    wss.close();
    process.exit(failures ? 1 : 0);
  });
}

const [mode, url] = process.argv.slice(2);
if (mode === 'client' && url) {
  const guard = setTimeout(() => {
    report('client', false, 'took longer than 60 s');
    process.exit(1);
  }, 60000);
  client(url)
    .catch((e) => report('client', false, String(e)))
    .finally(() => {
      clearTimeout(guard);
      process.exit(failures ? 1 : 0);
    });
} else if (mode === 'server') {
  server();
} else {
  console.error('usage: node node_peer.js client URL | server');
  process.exit(2);
}
