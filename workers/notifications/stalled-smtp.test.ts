import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isPermanent } from "../runtime/errors";
import { createMailer } from "./mailer";

// Un servidor SMTP real a medias: saluda y no contesta nada más (un relay colgado). Con los plazos
// de nodemailer el envío esperaba ~10 min por intento; ahora vence su plazo o la señal del handler.
describe("mailer against an SMTP server that greets and goes silent", () => {
  let server: Server;
  let port = 0;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
      socket.write("220 stalled.test ESMTP\r\n");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server?.close(resolve));
  });

  const send = (mailer: ReturnType<typeof createMailer>, signal?: AbortSignal) =>
    mailer
      .send({ to: "ops@farutech.test", subject: "x", text: "y", messageId: "m-1", signal })
      .then(() => undefined)
      .catch((err: unknown) => err);

  it("gives up after its socket timeout with a transient error", async () => {
    const mailer = createMailer({
      smtpUrl: `smtp://127.0.0.1:${port}`,
      from: "orchestrator@farutech.test",
      timeouts: { socketTimeout: 300 },
    });
    try {
      const started = Date.now();
      const err = await send(mailer);
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(false);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      mailer.close();
    }
  });

  it("stops when the handler's signal aborts, long before any timeout", async () => {
    const mailer = createMailer({
      smtpUrl: `smtp://127.0.0.1:${port}`,
      from: "orchestrator@farutech.test",
    });
    try {
      const controller = new AbortController();
      const pending = send(mailer, controller.signal);
      setTimeout(() => controller.abort(new Error("drain deadline")), 200);
      const err = await pending;
      expect(err).toBeInstanceOf(Error);
      expect(isPermanent(err)).toBe(false);
    } finally {
      mailer.close();
    }
  }, 15_000);
});
