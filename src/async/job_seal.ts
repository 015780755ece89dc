/**
 * Seals what a shared async job keeps of its request (`--redis-secret`): AES-256-GCM (Web Crypto) under a key
 * derived from the secret with HKDF-SHA-256, bound to the job's name, so a value copied to another job's name
 * does not open. Every replica derives the same key from the same secret.
 */
const INFO = new TextEncoder().encode("deepseek-ollama-bridge async job v1");
const IV_BYTES = 12;

export class JobSeal {
  private constructor(private readonly key: CryptoKey) {}

  static async fromSecret(secret: string): Promise<JobSeal> {
    const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), "HKDF", false, [
      "deriveKey",
    ]);
    const key = await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: INFO },
      material,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
    return new JobSeal(key);
  }

  /** The nonce followed by the ciphertext and its tag. */
  async seal(plain: Uint8Array<ArrayBuffer>, name: string): Promise<Uint8Array<ArrayBuffer>> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const additionalData = new TextEncoder().encode(name);
    const cipher = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData }, this.key, plain);
    const out = new Uint8Array(IV_BYTES + cipher.byteLength);
    out.set(iv);
    out.set(new Uint8Array(cipher), IV_BYTES);
    return out;
  }

  /** The plain bytes, or undefined when they were sealed under another secret or for another name. */
  async open(sealed: Uint8Array<ArrayBuffer>, name: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
    if (sealed.length <= IV_BYTES) return undefined;
    try {
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: sealed.subarray(0, IV_BYTES), additionalData: new TextEncoder().encode(name) },
        this.key,
        sealed.subarray(IV_BYTES),
      );
      return new Uint8Array(plain);
    } catch {
      return undefined;
    }
  }
}
