// A small MQTT 3.1.1 / 5.0 client over WebSocket, for the dashboard. No
// dependencies, no build step: the page loads this file as it is.
//
// One MqttWs object is one connection attempt (app.js makes a new one to
// reconnect, possibly to another listener). It speaks subprotocol "mqtt"
// (offering extra ones when asked) in binary frames and handles what a
// subscriber needs: CONNECT/CONNACK, SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK,
// incoming PUBLISH at QoS 0, 1 (PUBACK) and 2 (PUBREC, PUBREL, PUBCOMP),
// PINGREQ keep alive, and the broker's DISCONNECT (v5). A WebSocket frame may hold several packets or
// part of one; packets are parsed once the whole of one is buffered.
//
//   const c = new MqttWs("wss://host:8083/mqtt", { version: 5 });
//   c.onconnect = () => c.subscribe("sensors/#", 1);
//   c.onmessage = (topic, payload, info) => ...;   // payload: Uint8Array
//   c.onclose = (info) => ...;                       // {connected, reason}
//   c.open();
"use strict";

(function (global) {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8");

  // Packet types (the high nibble of the first byte).
  const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5,
    PUBREL = 6, PUBCOMP = 7, SUBSCRIBE = 8, SUBACK = 9, UNSUBSCRIBE = 10,
    UNSUBACK = 11, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;

  const CONNACK_3 = {
    1: "unacceptable protocol version", 2: "client identifier rejected",
    3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
  };
  const REASON_5 = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8b: "server shutting down", 0x8d: "keep alive timeout",
    0x8e: "session taken over", 0x8f: "topic filter invalid", 0x93: "receive maximum exceeded",
    0x95: "packet too large", 0x97: "quota exceeded", 0x98: "administrative action",
    0x9c: "use another server", 0x9d: "server moved", 0x9f: "connection rate exceeded",
  };

  function concat(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  const u16 = (n) => Uint8Array.of((n >> 8) & 0xff, n & 0xff);
  function str(s) {
    const b = encoder.encode(s);
    if (b.length > 0xffff) throw new Error("string too long for MQTT");
    return concat([u16(b.length), b]);
  }
  function varint(n) {
    const out = [];
    do {
      let byte = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) byte |= 0x80;
      out.push(byte);
    } while (n > 0);
    return Uint8Array.from(out);
  }
  // {value, size} of the variable byte integer at `at`; null if it is not
  // all there yet; throws when it is longer than 4 bytes.
  function readVarint(buf, at) {
    let value = 0, mult = 1;
    for (let i = 0; i < 4; i++) {
      if (at + i >= buf.length) return null;
      const byte = buf[at + i];
      value += (byte & 0x7f) * mult;
      if ((byte & 0x80) === 0) return { value, size: i + 1 };
      mult *= 128;
    }
    throw new Error("malformed remaining length");
  }
  const packet = (first, body) => concat([Uint8Array.of(first), varint(body.length), body]);
  const ack = (type, flags, id) => packet((type << 4) | flags, u16(id));

  class MqttWs {
    // options: version (4 = 3.1.1, 5), clientId, keepAlive (s), username,
    // password, protocols (WebSocket subprotocols offered besides "mqtt",
    // e.g. the admin endpoint's "sluice.bearer.<token>"; the broker
    // selects "mqtt").
    constructor(url, options = {}) {
      this.url = url;
      this.version = options.version === 4 ? 4 : 5;
      this.clientId = options.clientId ||
        "dashboard-" + Math.random().toString(36).slice(2, 10);
      this.keepAlive = options.keepAlive ?? 30;
      this.username = options.username;
      this.password = options.password;
      this.protocols = ["mqtt", ...(options.protocols || [])];
      this.onconnect = null;
      this.onmessage = null;
      this.onsuback = null;
      this.onclose = null;
      this.connected = false;
      this.closed = false;
      this.nextId = 1;
      this.pending = new Map(); // packet id -> what we wait for
      this.incomingQos2 = new Set(); // ids PUBRECed, waiting for PUBREL
      this.buf = new Uint8Array(0);
      this.ws = null;
      this.timer = null;
      this.lastSent = 0;
      this.pingSince = 0;
      this.closeReason = "";
    }

    open() {
      let ws;
      try {
        ws = new WebSocket(this.url, this.protocols);
      } catch (e) {
        this.finish("bad URL: " + e.message);
        return;
      }
      this.ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        this.send(this.connectPacket());
        const tick = Math.max(1, Math.min(this.keepAlive, 30)) * 250;
        this.timer = setInterval(() => this.keepAliveTick(), tick);
      };
      ws.onmessage = (ev) => {
        if (!(ev.data instanceof ArrayBuffer)) {
          this.fail("text frame from the broker");
          return;
        }
        this.buf = this.buf.length ? concat([this.buf, new Uint8Array(ev.data)]) : new Uint8Array(ev.data);
        try {
          this.drain();
        } catch (e) {
          this.fail(e.message);
        }
      };
      ws.onerror = () => {
        if (!this.closeReason) this.closeReason = "WebSocket error";
      };
      ws.onclose = (ev) => {
        const why = this.closeReason ||
          (ev.code === 1000 ? "closed" : "WebSocket closed (" + ev.code + ")");
        this.finish(why);
      };
    }

    close() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.connected) {
        // DISCONNECT; v5 adds reason 0 (normal) implicitly with length 0.
        this.send(Uint8Array.of(DISCONNECT << 4, 0));
      }
      this.closeReason = "closed";
      if (this.ws) this.ws.close(1000);
      this.finish("closed");
    }

    subscribe(filter, qos = 1) {
      const id = this.packetId();
      const parts = [u16(id)];
      if (this.version === 5) parts.push(varint(0)); // no properties
      parts.push(str(filter), Uint8Array.of(qos & 3));
      this.pending.set(id, { type: SUBACK, filter });
      this.send(packet((SUBSCRIBE << 4) | 2, concat(parts)));
      return id;
    }

    unsubscribe(filter) {
      const id = this.packetId();
      const parts = [u16(id)];
      if (this.version === 5) parts.push(varint(0));
      parts.push(str(filter));
      this.pending.set(id, { type: UNSUBACK, filter });
      this.send(packet((UNSUBSCRIBE << 4) | 2, concat(parts)));
      return id;
    }

    // --- internals ---

    connectPacket() {
      let flags = 0x02; // clean session / clean start: the page keeps no state
      const payload = [str(this.clientId)];
      if (this.username !== undefined && this.username !== "") {
        flags |= 0x80;
        payload.push(str(this.username));
        if (this.password !== undefined) {
          flags |= 0x40;
          payload.push(str(this.password));
        }
      }
      const head = [str("MQTT"), Uint8Array.of(this.version, flags), u16(this.keepAlive)];
      if (this.version === 5) head.push(varint(0));
      return packet(CONNECT << 4, concat(head.concat(payload)));
    }

    packetId() {
      for (let i = 0; i < 0xffff; i++) {
        const id = this.nextId;
        this.nextId = id === 0xffff ? 1 : id + 1;
        if (!this.pending.has(id)) return id;
      }
      throw new Error("no free packet id");
    }

    send(bytes) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(bytes);
      this.lastSent = Date.now();
    }

    keepAliveTick() {
      if (!this.connected || this.keepAlive === 0) return;
      const now = Date.now();
      if (this.pingSince && now - this.pingSince > this.keepAlive * 1000) {
        this.fail("no PINGRESP within keep alive");
        return;
      }
      if (!this.pingSince && now - this.lastSent >= this.keepAlive * 500) {
        this.pingSince = now;
        this.send(Uint8Array.of(PINGREQ << 4, 0));
      }
    }

    // Parses every complete packet in the buffer.
    drain() {
      for (;;) {
        if (this.buf.length < 2) return;
        const len = readVarint(this.buf, 1);
        if (len === null) return;
        const start = 1 + len.size;
        const end = start + len.value;
        if (this.buf.length < end) return;
        const first = this.buf[0];
        const body = this.buf.subarray(start, end);
        this.buf = this.buf.subarray(end);
        this.handle(first >> 4, first & 0x0f, body);
        if (this.closed) return;
      }
    }

    // Skips a v5 property block at `at`; returns the offset after it.
    skipProperties(body, at) {
      if (this.version !== 5) return at;
      const len = readVarint(body, at);
      if (len === null) throw new Error("truncated properties");
      return at + len.size + len.value;
    }

    handle(type, flags, body) {
      const id = () => (body[0] << 8) | body[1];
      switch (type) {
        case CONNACK: {
          const code = body[1];
          if (code !== 0) {
            const text = this.version === 5 ? REASON_5[code] : CONNACK_3[code];
            this.fail("connection refused: " + (text || "code " + code));
            return;
          }
          this.connected = true;
          if (this.onconnect) this.onconnect();
          return;
        }
        case PUBLISH: {
          const qos = (flags >> 1) & 3;
          const tlen = (body[0] << 8) | body[1];
          const topic = decoder.decode(body.subarray(2, 2 + tlen));
          let at = 2 + tlen;
          let pid = 0;
          if (qos > 0) {
            pid = (body[at] << 8) | body[at + 1];
            at += 2;
          }
          at = this.skipProperties(body, at);
          if (at > body.length) throw new Error("truncated PUBLISH");
          const payload = body.slice(at);
          if (qos === 1) this.send(ack(PUBACK, 0, pid));
          if (qos === 2) {
            this.send(ack(PUBREC, 0, pid));
            // A resent QoS 2 PUBLISH before PUBREL is the same message.
            if (this.incomingQos2.has(pid)) return;
            this.incomingQos2.add(pid);
          }
          if (this.onmessage) {
            this.onmessage(topic, payload, { qos, retain: (flags & 1) === 1, dup: (flags & 8) === 8 });
          }
          return;
        }
        case PUBREL:
          this.incomingQos2.delete(id());
          this.send(ack(PUBCOMP, 0, id()));
          return;
        case SUBACK: {
          const waited = this.pending.get(id());
          this.pending.delete(id());
          const at = this.skipProperties(body, 2);
          const codes = Array.from(body.subarray(at));
          if (this.onsuback) this.onsuback(waited ? waited.filter : "", codes);
          return;
        }
        case UNSUBACK:
          this.pending.delete(id());
          return;
        case PINGRESP:
          this.pingSince = 0;
          return;
        case DISCONNECT: {
          const code = body.length ? body[0] : 0;
          this.fail("disconnected by the broker: " + (REASON_5[code] || "code " + code));
          return;
        }
        case PUBACK: case PUBREC: case PUBCOMP:
          return; // we publish nothing
        default:
          throw new Error("unexpected packet type " + type);
      }
    }

    fail(reason) {
      this.closeReason = reason;
      if (this.ws) this.ws.close();
      this.finish(reason);
    }

    finish(reason) {
      if (this.closed) return;
      this.closed = true;
      clearInterval(this.timer);
      const wasConnected = this.connected;
      this.connected = false;
      if (this.onclose) this.onclose({ connected: wasConnected, reason });
    }
  }

  MqttWs.decode = (bytes) => decoder.decode(bytes);
  global.MqttWs = MqttWs;
})(window);
