import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { advisoryStream, domains, streams } from "../contracts/streams";
import { startNatsForTest, type TestNats } from "../test/support/stack";
import { type Bus, connectBus, ensureStreams } from "./bus";

// Cada stream con su tope: uno lleno no deja sin lugar a los otros (JetStream reserva el tope de
// cada uno contra el max_file_store del servidor, 2 GB en el de `npm start` y las pruebas).
describe("stream limits", () => {
  let nats: TestNats;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startNatsForTest();
    bus = await connectBus({ servers: nats.url, name: "stream-limits-test" });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.dispose();
  });

  const configOf = async (name: string) => (await (await bus.jsm()).streams.info(name)).config;

  it("gives every stream its own size cap and discard policy, all within the server's store", async () => {
    await ensureStreams(bus);
    let reserved = 0;
    for (const domain of domains) {
      const config = await configOf(streams[domain].name);
      expect(config.max_bytes).toBe(streams[domain].maxBytes);
      expect(config.discard).toBe(streams[domain].discard);
      reserved += config.max_bytes;
    }
    // Tareas sin procesar no se descartan: lleno, el relay las retiene en el outbox.
    expect((await configOf(streams.provisioning.name)).discard).toBe("new");
    const advisories = await configOf(advisoryStream.name);
    expect(advisories.max_bytes).toBe(advisoryStream.maxBytes);
    reserved += advisories.max_bytes;
    expect(reserved).toBeLessThan(2 * 1024 ** 3);
  });

  it("keeps a cap an operator tuned by hand, and caps a stream an older version left unlimited", async () => {
    const jsm = await bus.jsm();
    const tuned = await configOf(streams.billing.name);
    await jsm.streams.update(tuned.name, { ...tuned, max_bytes: 10 * 1024 * 1024 });
    const unlimited = await configOf(streams.notifications.name);
    await jsm.streams.update(unlimited.name, { ...unlimited, max_bytes: -1 });
    await ensureStreams(bus);
    expect((await configOf(streams.billing.name)).max_bytes).toBe(10 * 1024 * 1024);
    expect((await configOf(streams.notifications.name)).max_bytes).toBe(
      streams.notifications.maxBytes,
    );
  });
});
