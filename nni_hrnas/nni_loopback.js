// Preloaded into NNI's node server (node --require, through NODE_OPTIONS: see nni_hrnas/compat.py,
// patch 5). NNI 3.0 starts its REST and web-UI server with `app.listen(port)`, which binds every
// interface, and has no option to choose the address. A listen() that names a port but no host
// binds HRNAS_NNI_HOST instead (default 127.0.0.1).
'use strict';
const dns = require('dns');
const net = require('net');

const host = process.env.HRNAS_NNI_HOST || '127.0.0.1';
// NNI's own clients (the tuner channel, trials) reach the server at "localhost": IPv4 first.
dns.setDefaultResultOrder('ipv4first');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  if ((typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port)))
      && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, host);
  } else if (port && typeof port === 'object' && port.port !== undefined && port.host === undefined
             && port.path === undefined) {
    args[0] = { ...port, host };
  }
  return listen.apply(this, args);
};
