// Starts Portkey's open-source gateway (installed here by `npm install --prefix bench/peer`)
// on 127.0.0.1 only: its start script listens on every interface and has no address option,
// so every listen() in this process is pinned to loopback before the script is loaded.
//
//   node bench/peer/portkey_loopback.mjs PORT
import net from 'node:net';
import {fileURLToPath} from 'node:url';
import path from 'node:path';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: portkey_loopback.mjs PORT');
  process.exit(2);
}

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function pinnedListen(...args) {
  if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null) {
    args[0] = {...args[0], host: '127.0.0.1'};
  } else if (args.length > 0) {
    const rest = args.slice(1).filter((a) => typeof a === 'function');
    args = [args[0], '127.0.0.1', ...rest];
  }
  return listen.apply(this, args);
};

process.argv = [process.argv[0], 'start-server.js', `--port=${port}`, '--headless'];
const here = path.dirname(fileURLToPath(import.meta.url));
await import(path.join(here, 'node_modules/@portkey-ai/gateway/build/start-server.js'));
