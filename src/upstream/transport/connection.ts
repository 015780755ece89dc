/**
 * One upstream connection: a socket, bytes read ahead, and what the replay rules need to know of the request
 * on it (bytes written, response bytes received). While it idles in the pool a read stays pending on it, so a
 * server that closes it or writes anything unasked (a desynchronised or hostile upstream) ends it at once,
 * before another request could be sent on it and read those bytes as its answer.
 */

const READ_SIZE = 64 * 1024;
const EMPTY: Uint8Array<ArrayBuffer> = new Uint8Array(0);

export class Connection {
  #pushedBack: Uint8Array<ArrayBuffer> = EMPTY;
  #closed = false;
  /** The read kept pending while parked; the next read() takes its result. */
  #parkedRead?: Promise<number | null>;
  #parked = false;
  readonly #readBuffer = new Uint8Array(READ_SIZE);
  idleSince = 0;
  /** Bytes of the current request written to the socket. */
  written = 0;
  /** Bytes of the current response read from the socket. */
  received = 0;

  constructor(readonly conn: Deno.Conn, readonly origin: string) {}

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Parks the connection in the pool with a read pending: if that read completes while it is parked (the server
   * closed it, or sent bytes nobody asked for), the connection is closed and `onLost` removes it from the pool.
   */
  park(onLost: (connection: Connection) => void): void {
    this.#parked = true;
    this.idleSince = performance.now();
    const read = this.conn.read(this.#readBuffer).catch(() => null);
    this.#parkedRead = read;
    read.then(() => {
      if (this.#parked && this.#parkedRead === read) {
        this.close();
        onLost(this);
      }
    });
  }

  /** Takes the connection out of the pool for a new request. */
  unpark(): void {
    this.#parked = false;
    this.written = 0;
    this.received = 0;
  }

  /** The next bytes from the socket (or pushed back), or null at end of stream or on a reset. */
  async read(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#pushedBack.length > 0) {
      const bytes = this.#pushedBack;
      this.#pushedBack = EMPTY;
      return bytes;
    }
    let n: number | null;
    if (this.#parkedRead) {
      n = await this.#parkedRead;
      this.#parkedRead = undefined;
    } else {
      n = await this.conn.read(this.#readBuffer);
    }
    if (n === null) return null;
    this.received += n;
    // The read buffer is reused, so hand out a copy of exactly what arrived.
    return this.#readBuffer.slice(0, n);
  }

  /** Gives back bytes that belong to whatever is read next. */
  unread(bytes: Uint8Array<ArrayBuffer>): void {
    this.#pushedBack = bytes.length > 0 ? bytes : EMPTY;
  }

  /** Takes exactly `length` pushed-back bytes if that many are there (and no more), else nothing. */
  takePushedBack(length: number): Uint8Array<ArrayBuffer> | undefined {
    if (this.#pushedBack.length !== length) return undefined;
    const bytes = this.#pushedBack;
    this.#pushedBack = EMPTY;
    return bytes;
  }

  /** Bytes that arrived beyond the response: the connection is out of step and must not be reused. */
  get hasUnread(): boolean {
    return this.#pushedBack.length > 0;
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      const n = await this.conn.write(bytes.subarray(offset));
      offset += n;
      this.written += n;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#parked = false;
    try {
      this.conn.close();
    } catch {
      // Already closed by the peer or by an abort.
    }
  }
}
