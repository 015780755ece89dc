/** One pooled upstream connection: a socket with a read-ahead buffer and an idle timestamp. */

const READ_SIZE = 64 * 1024;
const EMPTY: Uint8Array<ArrayBuffer> = new Uint8Array(0);

export class Connection {
  #pending: Uint8Array<ArrayBuffer> = EMPTY;
  #closed = false;
  readonly #readBuffer = new Uint8Array(READ_SIZE);
  idleSince = 0;

  constructor(readonly conn: Deno.Conn, readonly origin: string) {}

  get closed(): boolean {
    return this.#closed;
  }

  /** The next bytes from the socket (or pushed back), or null at end of stream. */
  async read(): Promise<Uint8Array<ArrayBuffer> | null> {
    if (this.#pending.length > 0) {
      const bytes = this.#pending;
      this.#pending = EMPTY;
      return bytes;
    }
    const n = await this.conn.read(this.#readBuffer);
    // The read buffer is reused, so hand out a copy of exactly what arrived.
    return n === null ? null : this.#readBuffer.slice(0, n);
  }

  /** Gives back bytes that belong to whatever is read next. */
  unread(bytes: Uint8Array<ArrayBuffer>): void {
    this.#pending = bytes.length > 0 ? bytes : EMPTY;
  }

  /** Takes exactly `length` pushed-back bytes if that many are there (and no more), else nothing. */
  takePending(length: number): Uint8Array<ArrayBuffer> | undefined {
    if (this.#pending.length !== length) return undefined;
    const bytes = this.#pending;
    this.#pending = EMPTY;
    return bytes;
  }

  get hasPending(): boolean {
    return this.#pending.length > 0;
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.length;) written += await this.conn.write(bytes.subarray(written));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by the peer or by an abort.
    }
  }
}
