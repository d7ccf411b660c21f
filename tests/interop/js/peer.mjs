// A js-libp2p 3.x peer driven over stdin/stdout, for meshnode's interop test and bench.
//
// Commands, one JSON object a line on stdin:
//   {"op": "dial", "addr": "/ip4/…/tcp/…/p2p/…"}
//   {"op": "subscribe", "topic": "…"}
//   {"op": "publish", "topic": "…", "data": "<base64>"}   (or "stamp": "<json>", see below)
//   {"op": "request", "addr": "…", "protocol": "…", "data": "<base64>", "timeout_ms": 5000}
//   {"op": "mesh", "topic": "…"}
//   {"op": "ping", "addr": "…"}
//   {"op": "stop"}
// Events, one JSON object a line on stdout: ready, dialed, subscribed, published, message,
// pong, error. Nothing else is written to stdout.

// js-libp2p 3 uses Promise.withResolvers, which Node only has from version 22.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')
const readline = await import('node:readline')

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

const node = await createLibp2p({
  addresses: { listen: [process.env.JS_LISTEN ?? '/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      heartbeatInterval: 500
    })
  }
})

node.services.pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  emit({
    event: 'message',
    topic: msg.topic,
    from: msg.type === 'signed' ? msg.from.toString() : null,
    seqno: msg.type === 'signed' ? msg.sequenceNumber.toString() : null,
    data: Buffer.from(msg.data).toString('base64'),
    at: Date.now() / 1000
  })
})

async function handle (cmd) {
  switch (cmd.op) {
    case 'dial': {
      const started = performance.now()
      await node.dial(multiaddr(cmd.addr))
      return { event: 'dialed', addr: cmd.addr, ms: performance.now() - started }
    }
    case 'subscribe':
      node.services.pubsub.subscribe(cmd.topic)
      return { event: 'subscribed', topic: cmd.topic }
    case 'publish': {
      // "stamp": a JSON object sent with the publish time (ms resolution) added, for bench/.
      const data = cmd.stamp != null
        ? Buffer.from(JSON.stringify({ ...JSON.parse(cmd.stamp), t: Date.now() / 1000 }))
        : Buffer.from(cmd.data, 'base64')
      const result = await node.services.pubsub.publish(cmd.topic, data)
      return {
        event: 'published',
        topic: cmd.topic,
        recipients: result.recipients.map((p) => p.toString()),
        at: Date.now() / 1000
      }
    }
    case 'request': {
      // Open a stream with one protocol, send bytes, and return whatever comes back before
      // the peer closes the stream or the deadline passes.
      const chunks = []
      let error = null
      try {
        const stream = await node.dialProtocol(multiaddr(cmd.addr), cmd.protocol,
          { signal: AbortSignal.timeout(cmd.timeout_ms ?? 5000) })
        stream.send(Buffer.from(cmd.data, 'base64'))
        const deadline = setTimeout(() => stream.abort(new Error('deadline')), cmd.timeout_ms ?? 5000)
        try {
          for await (const chunk of stream) chunks.push(Buffer.from(chunk.subarray()))
        } finally {
          clearTimeout(deadline)
        }
      } catch (err) {
        error = String(err?.message ?? err)
      }
      return { event: 'response', protocol: cmd.protocol, data: Buffer.concat(chunks).toString('base64'), error }
    }
    case 'ping':
      return { event: 'pong', ms: await node.services.ping.ping(multiaddr(cmd.addr)) }
    case 'mesh': {
      const pubsub = node.services.pubsub
      return {
        event: 'mesh',
        topic: cmd.topic,
        subscribers: pubsub.getSubscribers(cmd.topic).map((p) => p.toString()),
        mesh: pubsub.getMeshPeers(cmd.topic),
        // GossipSub's peer score of each connected peer: a broken IWANT promise (a message
        // id that the peer announced but whose message hashes to another id) lowers it.
        scores: Object.fromEntries(pubsub.getPeers().map((p) => [p.toString(), pubsub.getScore(p.toString())]))
      }
    }
    case 'stop':
      await node.stop()
      process.exit(0)
    // falls through (unreachable)
    default:
      throw new Error(`unknown op ${cmd.op}`)
  }
}

emit({
  event: 'ready',
  peer_id: node.peerId.toString(),
  addrs: node.getMultiaddrs().map((a) => a.toString())
})

const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let cmd
  try {
    cmd = JSON.parse(line)
    emit(await handle(cmd))
  } catch (err) {
    emit({ event: 'error', op: cmd?.op ?? null, error: String(err?.message ?? err) })
  }
}
await node.stop()
