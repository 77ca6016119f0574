'use strict';
const crypto = require('crypto');

// verifySessionSignature checks the X-Session-Signature header that
// caddy-session adds with sign_headers. req is a Node http.IncomingMessage,
// key the signing key (string or Buffer), maxSkewSeconds how far the
// signature's time may be from now. Returns true or false.
function verifySessionSignature(req, key, maxSkewSeconds = 60) {
  const sig = req.headers['x-session-signature'];
  if (typeof sig !== 'string') return false;
  let ts = '', mac = '';
  for (const part of sig.split(',')) {
    const [k, v = ''] = part.trim().split(/=(.*)/s);
    if (k === 't') ts = v;
    else if (k === 'v1') mac = v;
  }
  if (!/^[0-9]+$/.test(ts) || !/^[0-9a-fA-F]{64}$/.test(mac)) return false;
  if (Math.abs(Date.now() / 1000 - Number(ts)) > maxSkewSeconds) return false;
  // rawHeaders keeps every header line as received: a repeated or
  // re-spelled X-Session-* header breaks the signature.
  const lines = [];
  let signatures = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i].toLowerCase();
    if (name === 'x-session-signature') signatures++;
    else if (name.replace(/[_.]/g, '-').startsWith('x-session')) lines.push(name + ':' + req.rawHeaders[i + 1]);
  }
  if (signatures !== 1) return false;
  lines.sort(); // UTF-16 code unit order: byte order, headers being ASCII
  const path = req.url.split('?')[0];
  const text = ['caddy-session-v1', ts, req.method, req.headers.host, path, ...lines]
    .map((s) => s + '\n').join('');
  const want = crypto.createHmac('sha256', key).update(text).digest();
  const got = Buffer.from(mac, 'hex');
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

module.exports = { verifySessionSignature };
