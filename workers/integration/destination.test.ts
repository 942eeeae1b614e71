import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isBlockedDestination,
  isPrivateAddress,
  publicOnlyLookup,
  webhookFetch,
} from "./destination";

// Un webhook no llega a la red interna del worker (metadata de la nube, NATS, Postgres): ni por
// IP literal ni por un nombre que resuelve a una privada. Sin salida a internet aquí, el destino
// público se prueba en la resolución (una IP pública se resuelve a sí misma, sin DNS).
describe("webhook destinations", () => {
  let server: Server;
  let port: number;
  let hits = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits++;
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => server.listen(0, "::", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it("tells private, local and reserved addresses from public ones", () => {
    for (const address of [
      "127.0.0.1",
      "10.1.2.3",
      "172.20.0.5",
      "192.168.1.10",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "::",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "64:ff9b::a00:1",
      "::7f00:1",
      "2002:7f00:1::",
      "64:ff9b:1::1",
      "100::1",
      "2001:0:4136:e378::1",
      "fec0::1",
      "::ffff:0:7f00:1",
      "3fff::1",
      "2001:2::1",
      "2001:10::1",
      "fe80::1%eth0",
      "not-an-ip",
    ]) {
      expect(isPrivateAddress(address), address).toBe(true);
    }
    // Una IPv6 que lleva una IPv4 pública (DNS64/NAT64, mapeada, 6to4) es pública.
    for (const address of [
      "93.184.216.34",
      "8.8.8.8",
      "2606:4700:4700::1111",
      "64:ff9b::808:808",
      "::ffff:8.8.8.8",
      "2002:808:808::1",
    ]) {
      expect(isPrivateAddress(address), address).toBe(false);
    }
  });

  it("refuses loopback by literal IP, by name and in disguise, and sends nothing", async () => {
    const send = webhookFetch(false);
    for (const url of [
      `http://127.0.0.1:${port}/hook`,
      `http://localhost:${port}/hook`,
      `http://[::1]:${port}/hook`,
      `http://[::ffff:127.0.0.1]:${port}/hook`,
      `http://0x7f000001:${port}/hook`,
      `http://2130706433:${port}/hook`,
    ]) {
      const failure = await send(url, { method: "POST", body: "{}" }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(isBlockedDestination(failure), url).toBe(true);
    }
    expect(hits).toBe(0);
    // Con WEBHOOK_ALLOW_PRIVATE_TARGETS (desarrollo y pruebas) sí llega.
    const allowed = await webhookFetch(true)(`http://127.0.0.1:${port}/hook`, {
      method: "POST",
      body: "{}",
    });
    expect(allowed.status).toBe(204);
    expect(hits).toBe(1);
  });

  it("resolves a public address to itself and fails a private one", async () => {
    const resolve = (host: string, all: boolean) =>
      new Promise<{ err: unknown; address: unknown }>((done) => {
        publicOnlyLookup(host, { all }, (err, address) => done({ err, address }));
      });
    expect(await resolve("93.184.216.34", false)).toEqual({
      err: null,
      address: "93.184.216.34",
    });
    expect((await resolve("93.184.216.34", true)).address).toEqual([
      { address: "93.184.216.34", family: 4 },
    ]);
    expect(isBlockedDestination((await resolve("localhost", true)).err)).toBe(true);
  });
});
