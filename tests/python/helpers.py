"""A thin, blocking wrapper around paho-mqtt's v2 callback API.

Every callback feeds a queue; every wait is bounded by WAIT seconds, so a
missing packet fails the test instead of hanging it.
"""

import queue
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 5.0
HOST = "127.0.0.1"


def props(packet_type, **values):
    """Properties(packet_type) with attributes set, e.g. props(PUBLISH, UserProperty=[...])."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def publish_props(**values):
    return props(PacketTypes.PUBLISH, **values)


class Client:
    """One MQTT connection. The paho client is built at `connect` (3.1.1
    takes its clean session flag at construction) and its network loop runs
    in our own thread, which never reconnects, so a test sees exactly one
    connection per `connect`."""

    def __init__(self, port, version, client_id="", manual_ack=False):
        self.port = port
        self.manual_ack = manual_ack
        self.version = version
        self.client_id = client_id
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = queue.Queue()
        self.unsubacks = queue.Queue()
        self.published = queue.Queue()
        self.disconnects = queue.Queue()
        self.c = None
        self._will = None
        self._stop = threading.Event()
        self._thread = None
        self.connack = None

    @property
    def v5(self):
        return self.version == mqtt.MQTTv5

    def will(self, topic, payload, qos=1, retain=False, properties=None):
        """Sets the will of the next `connect`."""
        self._will = (topic, payload, qos, retain, properties)

    def _build(self, clean):
        kwargs = {} if self.v5 else {"clean_session": clean}
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.version,
            manual_ack=self.manual_ack,
            **kwargs,
        )
        c.on_connect = lambda c, u, flags, rc, p: self.connacks.put((rc, flags, p))
        c.on_message = lambda c, u, m: self.messages.put(m)
        c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs, p))
        c.on_unsubscribe = lambda c, u, mid, rcs, p: self.unsubacks.put((mid, rcs, p))
        c.on_publish = lambda c, u, mid, rc, p: self.published.put((mid, rc, p))
        c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put((rc, p))
        # paho writes from the calling thread unless it runs its own loop
        # thread or an external loop is registered. Registering this no-op
        # makes our loop thread the only writer, so packets from one client
        # leave in the order they were made.
        c.on_socket_register_write = lambda c, u, sock: None
        if self._will:
            topic, payload, qos, retain, properties = self._will
            c.will_set(topic, payload, qos=qos, retain=retain, properties=properties)
        return c

    def _run(self):
        while not self._stop.is_set():
            rc = self.c.loop(timeout=0.02)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                return  # connection gone; no reconnection

    def connect(self, clean=True, session_expiry=None, properties=None, keepalive=30, expect_ok=True):
        """Connects and waits for CONNACK. Returns (reason_code, flags, properties).

        v3.1.1: `clean` is the clean session flag. v5: clean start, plus a
        Session Expiry Interval if `session_expiry` is given.
        """
        self.c = self._build(clean)
        if self.v5:
            if session_expiry is not None:
                properties = properties or props(PacketTypes.CONNECT)
                properties.SessionExpiryInterval = session_expiry
            self.c.connect(HOST, self.port, keepalive, clean_start=clean, properties=properties)
        else:
            self.c.connect(HOST, self.port, keepalive)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        try:
            rc, flags, p = self.connacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError("no CONNACK") from None
        self.connack = (rc, flags, p)
        if expect_ok:
            assert not rc.is_failure, f"CONNACK refused: {rc}"
        return rc, flags, p

    def _stop_loop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT)
            self._thread = None

    def subscribe(self, topic, qos=1, options=None, properties=None):
        """Subscribes and returns the SUBACK reason codes (list of ReasonCode)."""
        if options is not None:
            res, mid = self.c.subscribe(topic, options=options, properties=properties)
        else:
            res, mid = self.c.subscribe(topic, qos, properties=properties)
        assert res == mqtt.MQTT_ERR_SUCCESS, res
        try:
            got_mid, rcs, _ = self.subacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic!r}") from None
        assert got_mid == mid
        return rcs

    def unsubscribe(self, topic, properties=None):
        res, mid = self.c.unsubscribe(topic, properties=properties)
        assert res == mqtt.MQTT_ERR_SUCCESS, res
        try:
            got_mid, rcs, _ = self.unsubacks.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no UNSUBACK for {topic!r}") from None
        assert got_mid == mid
        return rcs

    def publish(self, topic, payload=b"", qos=1, retain=False, properties=None):
        """Publishes; for QoS 1/2 waits for the end of the flow (so the broker
        has routed the message) and returns the PUBACK/PUBREC reason code."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"publish to {topic!r} not completed")
            try:
                mid, rc, _ = self.published.get(timeout=left)
            except queue.Empty:
                continue
            if mid == info.mid:
                return rc

    def recv(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout} s") from None

    def recv_n(self, n, timeout=WAIT):
        return [self.recv(timeout) for _ in range(n)]

    def expect_nothing(self, duration=0.3):
        try:
            m = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic!r}: {m.payload!r}")

    def wait_closed(self, timeout=WAIT):
        """Waits until the network loop ended (the broker closed the socket)
        and returns the on_disconnect (reason_code, properties)."""
        try:
            got = self.disconnects.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("connection not closed") from None
        self._stop_loop()
        return got

    def disconnect(self):
        """Sends DISCONNECT and waits for the close. paho closes the socket
        right after writing DISCONNECT, so give the broker a moment to finish
        with the session before the test goes on."""
        self.c.disconnect()
        self.wait_closed()
        time.sleep(0.05)

    def stall(self):
        """Stops the network loop, leaving the socket open: no more reads,
        acknowledgements or PINGREQs."""
        self._stop_loop()

    def kill(self):
        """Drops the TCP connection without DISCONNECT (abnormal loss)."""
        self._stop_loop()
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        if self._thread is not None:
            try:
                self.c.disconnect()
                self.disconnects.get(timeout=1)
            except Exception:
                pass
            self._stop_loop()


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    return data


def raw_read_packet(sock):
    """Reads one MQTT packet from a raw socket: (first byte, body bytes)."""
    first = _recv_exact(sock, 1)[0]
    length, shift = 0, 0
    while True:
        b = _recv_exact(sock, 1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, _recv_exact(sock, length)
