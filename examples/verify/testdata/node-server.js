'use strict';
// Test harness: an upstream that answers, for each request, whether
// verify.js accepts its signature, with the X-Session-* headers and Host
// it received. Usage: node node-server.js <port> <key>
const http = require('http');
const path = require('path');
const { verifySessionSignature } = require(path.join(__dirname, '..', 'verify.js'));

const [port, key] = process.argv.slice(2);
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i].toLowerCase().replace(/[_.]/g, '-').startsWith('x-session')) {
        headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
      }
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ valid: verifySessionSignature(req, key, 60), host: req.headers.host, headers }));
  });
}).listen(Number(port), '127.0.0.1', () => console.log('listening'));
