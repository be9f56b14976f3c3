// The official Supabase Realtime client against a Handoff server.
//
// Env: HANDOFF_WS (ws://host/realtime/v1), HANDOFF_APIKEY, HANDOFF_TOKEN (a visitor token),
// HANDOFF_CONVERSATION, HANDOFF_AUTH (`set` or `callback`). Prints one JSON line per milestone on stdout; the Rust test drives the
// server side (publishing message:new, checking the typing broadcast) and reads these lines.
import { RealtimeClient } from '@supabase/realtime-js'
import WebSocket from 'ws'

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const fail = (why) => {
  say({ step: 'error', why: String(why) })
  process.exit(1)
}
setTimeout(() => fail('timeout'), 20000).unref()

// HANDOFF_AUTH=callback gives the token through the `accessToken` option, as supabase-js does:
// realtime-js then sends its first join before the callback has resolved, without a token.
const callback = process.env.HANDOFF_AUTH === 'callback'
const client = new RealtimeClient(process.env.HANDOFF_WS, {
  params: { apikey: process.env.HANDOFF_APIKEY },
  transport: WebSocket,
  heartbeatIntervalMs: 500,
  ...(callback ? { accessToken: async () => process.env.HANDOFF_TOKEN } : {}),
})
if (!callback) client.setAuth(process.env.HANDOFF_TOKEN)

let heartbeats = 0
client.onHeartbeat((status) => {
  if (status === 'ok') heartbeats += 1
})

const channel = client.channel(`conversation:${process.env.HANDOFF_CONVERSATION}`, {
  config: { broadcast: { ack: true, self: false }, private: true },
})
channel.on('broadcast', { event: 'message:new' }, async (msg) => {
  say({ step: 'message', body: msg.payload.message.body, seq: msg.payload.message.seq })
  // Stay through heartbeats, then send a typing broadcast (binary kind 3 on vsn 2.0.0).
  const started = Date.now()
  while (heartbeats < 2 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 50))
  say({ step: 'heartbeats', count: heartbeats })
  const ack = await channel.send({
    type: 'broadcast',
    event: 'typing',
    payload: { conversation_id: process.env.HANDOFF_CONVERSATION, actor: { kind: 'customer', id: 'ignored' }, is_typing: true },
  })
  say({ step: 'typing', ack })
  await client.removeAllChannels()
  client.disconnect()
  process.exit(ack === 'ok' ? 0 : 1)
})
// In callback mode the first, tokenless join is answered ok, then `phx_error` after the
// server's grace (CHANNEL_ERROR here), and realtime-js rejoins with its token a second later.
let subscribed = 0
let errors = 0
channel.subscribe((status, err) => {
  if (status === 'SUBSCRIBED') say({ step: 'subscribed', n: ++subscribed })
  else if (status === 'CHANNEL_ERROR' && callback && ++errors === 1) say({ step: 'channel_error' })
  else if (status === 'CHANNEL_ERROR' || status === 'TIMED_OUT') fail(`${status} ${err ?? ''}`)
})
