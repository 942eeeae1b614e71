import { describe, expect, it } from "vitest";
import { hashSecret, verifySecret } from "./secret-hash";

function parts(stored: string): [string, string, string, string] {
  const [scheme = "", iter = "", salt = "", hash = ""] = stored.split("$");
  return [scheme, iter, salt, hash];
}

// Cambia un carácter base64url por otro distinto (posición 0: sin bits de relleno).
function flipFirst(value: string): string {
  const first = value.charAt(0);
  return (first === "A" ? "B" : "A") + value.slice(1);
}

describe("hashSecret / verifySecret", () => {
  it("usa el formato pbkdf2-sha256$100000$salt$hash", async () => {
    const stored = await hashSecret("s3cret");
    const [scheme, iter, salt, hash] = parts(stored);
    expect(scheme).toBe("pbkdf2-sha256");
    expect(iter).toBe("100000");
    expect(salt).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(hash).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("verifica el secreto correcto", async () => {
    const stored = await hashSecret("correct horse battery staple");
    expect(await verifySecret("correct horse battery staple", stored)).toBe(true);
  });

  it("rechaza un secreto distinto", async () => {
    const stored = await hashSecret("s3cret");
    expect(await verifySecret("s3cret ", stored)).toBe(false);
    expect(await verifySecret("S3cret", stored)).toBe(false);
    expect(await verifySecret("", stored)).toBe(false);
  });

  it("dos hashes del mismo secreto difieren (sal aleatoria) y ambos verifican", async () => {
    const a = await hashSecret("same");
    const b = await hashSecret("same");
    expect(a).not.toBe(b);
    expect(parts(a)[2]).not.toBe(parts(b)[2]);
    expect(await verifySecret("same", a)).toBe(true);
    expect(await verifySecret("same", b)).toBe(true);
  });

  it("rechaza un hash o una sal manipulados", async () => {
    const stored = await hashSecret("s3cret");
    const [scheme, iter, salt, hash] = parts(stored);
    expect(await verifySecret("s3cret", [scheme, iter, salt, flipFirst(hash)].join("$"))).toBe(
      false,
    );
    expect(await verifySecret("s3cret", [scheme, iter, flipFirst(salt), hash].join("$"))).toBe(
      false,
    );
    expect(await verifySecret("s3cret", [scheme, "99999", salt, hash].join("$"))).toBe(false);
    expect(await verifySecret("s3cret", [scheme, iter, salt, hash.slice(0, 40)].join("$"))).toBe(
      false,
    );
  });

  it("acepta menos iteraciones si el hash se hizo con ellas", async () => {
    const stored = await hashSecret("x");
    const [scheme, , salt] = parts(stored);
    // Hash real con 1000 iteraciones usando la misma sal.
    const key = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode("x"),
      "PBKDF2",
      false,
      ["deriveBits"],
    );
    const saltBytes = Uint8Array.from(
      atob(`${salt.replace(/-/g, "+").replace(/_/g, "/")}==`),
      (ch) => ch.charCodeAt(0),
    );
    const bits = new Uint8Array(
      await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt: saltBytes, iterations: 1000 },
        key,
        256,
      ),
    );
    const hash = btoa(String.fromCharCode(...bits))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
    expect(await verifySecret("x", `${scheme}$1000$${salt}$${hash}`)).toBe(true);
    expect(await verifySecret("y", `${scheme}$1000$${salt}$${hash}`)).toBe(false);
  });

  it("devuelve false sin lanzar para valores almacenados malformados", async () => {
    const stored = await hashSecret("s3cret");
    const [, , salt, hash] = parts(stored);
    const malformed = [
      "",
      "x$y",
      "$$$",
      `bcrypt$100000$${salt}$${hash}`,
      `pbkdf2-sha512$100000$${salt}$${hash}`,
      `pbkdf2-sha256$100001$${salt}$${hash}`,
      `pbkdf2-sha256$1000000$${salt}$${hash}`,
      `pbkdf2-sha256$0$${salt}$${hash}`,
      `pbkdf2-sha256$-5$${salt}$${hash}`,
      `pbkdf2-sha256$1.5$${salt}$${hash}`,
      `pbkdf2-sha256$abc$${salt}$${hash}`,
      `pbkdf2-sha256$$${salt}$${hash}`,
      `pbkdf2-sha256$100000$$${hash}`,
      `pbkdf2-sha256$100000$${salt}$`,
      `pbkdf2-sha256$100000$${salt}`,
    ];
    for (const value of malformed) {
      await expect(verifySecret("s3cret", value), value).resolves.toBe(false);
    }
  });

  it("devuelve false (sin lanzar) si la sal o el hash no son base64url", async () => {
    const stored = await hashSecret("s3cret");
    const [scheme, iter, salt, hash] = parts(stored);
    await expect(verifySecret("s3cret", `${scheme}$${iter}$!!!$${hash}`)).resolves.toBe(false);
    await expect(verifySecret("s3cret", `${scheme}$${iter}$${salt}$a`)).resolves.toBe(false);
  });
});
