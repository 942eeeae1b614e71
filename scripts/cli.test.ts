import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, count, eq, isNull } from "drizzle-orm";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams, subjects } from "../contracts/streams";
import { connectBus, ensureStreams } from "../core/bus";
import { newId } from "../core/ids";
import { createSecretBox, generateEncryptionKey, secretContext } from "../core/secret-box";
import {
  apiClients,
  dlqEntries,
  outboxEvents,
  provisioningTasks,
  tenantInstances,
  webhookEndpoints,
} from "../db/schema";
import { seedDemo } from "../db/seed";
import { findNatsServer } from "../infra/nats/local-server";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { startNatsForTest, type TestNats, waitFor } from "../test/support/stack";

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Un CLI como lo corre un operador: su salida y su código. */
const runScript = (script: string, args: string[], env: NodeJS.ProcessEnv) =>
  new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", script, ...args], { env });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("exit", (code) => resolve({ code, out, err }));
  });

// Las herramientas de operaciones tal como las corre un operador: procesos reales, base y NATS reales.
describe("operator CLIs", () => {
  let nats: TestNats;
  let db: TestDatabase;

  const run = (script: string, args: string[], natsUrl = nats.url) =>
    runScript(script, args, {
      ...process.env,
      NATS_URL: natsUrl,
      DATABASE_URL: db.url,
      LOG_LEVEL: "silent",
    });
  const dlq = (...args: string[]) => run("scripts/dlq.ts", args);

  const entry = (n: number, error: string) => {
    const envelope = {
      id: newId(),
      type: "billing.cycle_triggered",
      occurredAt: new Date().toISOString(),
      correlationId: `cli-${n}`,
      data: { period: "2026-11" },
    };
    return {
      id: newId(),
      domain: "billing" as const,
      stream: streams.billing.name,
      streamSequence: 1_000 + n,
      subject: subjects.billingCycle,
      messageKey: envelope.id,
      eventId: envelope.id,
      eventType: envelope.type,
      correlationId: envelope.correlationId,
      envelope,
      rawPayload: JSON.stringify(envelope),
      error,
      errorKind: "transient" as const,
      deliveries: 5,
    };
  };
  const first = entry(1, 'message data failed its schema: [\n  {\n    "code": "custom"\n  }\n]');
  const second = entry(2, "connect ECONNREFUSED");

  beforeAll(async () => {
    nats = await startNatsForTest();
    // Los streams existen (los crean los workers al arrancar), como en una instalación real.
    const setup = await connectBus({ servers: nats.url, name: "cli-test-setup" });
    await ensureStreams(setup);
    await setup.close();
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    await db.handle.db.insert(dlqEntries).values([first, second]);
  });
  afterAll(async () => {
    await nats?.dispose();
    await db?.drop();
  });

  it("dlq list prints one line per entry, even for a multi-line error", async () => {
    const r = await dlq("list");
    expect(r.code).toBe(0);
    const lines = r.out.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(first.id);
    expect(lines[0]).toContain("pending");
    expect(lines[1]).toContain("connect ECONNREFUSED");
  });

  it("dlq list piped into a reader that stops early (| head) ends quietly", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/dlq.ts", "list"], {
      env: { ...process.env, NATS_URL: "", DATABASE_URL: db.url, LOG_LEVEL: "silent" },
    });
    // El lector se va antes de leer nada, como `head -1` tras su línea.
    child.stdout.destroy();
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(err).not.toContain("EPIPE");
    expect(code).toBe(0);
  });

  it("dlq show prints the entry; a malformed id is a usage error and an unknown one says so", async () => {
    const shown = await dlq("show", first.id);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.out)).toMatchObject({ id: first.id, correlationId: "cli-1" });
    const malformed = await dlq("show", "not-a-uuid");
    expect(malformed.code).toBe(2);
    expect(malformed.err).toContain("is not a DLQ entry id");
    expect(malformed.err).not.toMatch(/select|params/i);
    const unknown = await dlq("show", newId());
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("does not exist");
    expect((await dlq("frobnicate")).code).toBe(2);
    // Sin orden, o con de más: el uso, sin tocar la base (aquí no existe).
    for (const args of [[], ["list", "junk"], ["show"], ["show", "--all"]]) {
      const r = await runScript("scripts/dlq.ts", args, {
        ...process.env,
        DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
        LOG_LEVEL: "silent",
      });
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.err).toContain("usage: npm run dlq");
    }
  });

  it("dlq replay republishes one entry once; replay --all takes the rest", async () => {
    const one = await dlq("replay", first.id);
    expect(one.code).toBe(0);
    expect(one.out).toContain(`replayed ${first.id}`);
    const again = await dlq("replay", first.id);
    expect(again.code).toBe(1);
    expect(again.err).toContain("already replayed");
    const all = await dlq("replay", "--all");
    expect(all.code).toBe(0);
    expect(all.out).toContain(`replayed ${second.id}`);
    expect(all.out).toContain("1 entries replayed, 0 skipped");
    const rows = await db.handle.db.select().from(dlqEntries);
    expect(rows.every((r) => r.replayCount === 1)).toBe(true);
    // Y llegaron de verdad a JetStream, en su subject original y con su correlación.
    const bus = await connectBus({ servers: nats.url, name: "cli-replay-check" });
    try {
      const jsm = await bus.jsm();
      const info = await jsm.streams.info(streams.billing.name, {
        subjects_filter: subjects.billingCycle,
      });
      expect(info.state.subjects).toEqual({ [subjects.billingCycle]: 2 });
      const last = await jsm.streams.getMessage(streams.billing.name, {
        last_by_subj: subjects.billingCycle,
      });
      expect(last?.json<{ correlationId: string }>().correlationId).toBe("cli-2");
    } finally {
      await bus.close();
    }
  });

  it("dlq replay --all replays what it can, in order, and exits 1 naming each entry it skipped", async () => {
    const broken = { ...entry(3, "not an envelope"), envelope: null, rawPayload: "garbage" };
    const good = entry(4, "connect ECONNREFUSED");
    await db.handle.db.insert(dlqEntries).values([broken, good]);
    const all = await dlq("replay", "--all");
    expect(all.code).toBe(1);
    expect(all.out).toContain(`replayed ${good.id}`);
    expect(all.err).toContain(`skipped ${broken.id}: This message is not a valid event envelope`);
    expect(all.err).toContain("1 entries replayed, 1 skipped");
  });

  it("dlq replay without NATS_URL queues the replay for the workers' relay and says so", async () => {
    // Sin NATS_URL no vale el broker por defecto (127.0.0.1:4222 puede ser otro, como el de esta
    // máquina): el reenvío queda en el outbox, como con admin:client.
    const queued = entry(5, "connect ECONNREFUSED");
    await db.handle.db.insert(dlqEntries).values(queued);
    const r = await run("scripts/dlq.ts", ["replay", queued.id], "");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`queued ${queued.id}`);
    expect(r.out).toContain("outbox relay");
    const pending = await db.handle.db
      .select()
      .from(outboxEvents)
      .where(
        and(isNull(outboxEvents.publishedAt), eq(outboxEvents.subject, subjects.billingCycle)),
      );
    expect(pending).toHaveLength(1);
  });

  // Con el LOG_LEVEL de siempre (no silent): el aviso del broker caído salía como JSON con la
  // pila entera en medio de la salida, y el resumen contaba como reenviado lo que quedó en cola.
  it("dlq replay and publish:test with NATS unreachable say so in one line, without a stack trace", async () => {
    const a = entry(6, "connect ECONNREFUSED");
    const b = entry(7, "connect ECONNREFUSED");
    await db.handle.db.insert(dlqEntries).values([a, b]);
    const env = {
      ...process.env,
      NATS_URL: "nats://127.0.0.1:1",
      DATABASE_URL: db.url,
      LOG_LEVEL: undefined,
    };
    const all = await runScript("scripts/dlq.ts", ["replay", "--all"], env);
    expect(all.out).toContain(`queued ${a.id}`);
    expect(all.out).toContain(`queued ${b.id}`);
    // Las entradas rotas de otras pruebas de este archivo se saltan (y el código es 1 por ellas).
    expect(`${all.out}${all.err}`).toMatch(
      /0 entries replayed, 2 queued for the workers' outbox relay \(NATS not reachable\), \d+ skipped/,
    );
    const provision = await runScript(
      "scripts/publish-test.ts",
      ["--count", "1", "--type", "provision"],
      env,
    );
    expect(provision.code, provision.err).toBe(0);
    expect(provision.out.match(/^task /gm)).toHaveLength(1);
    expect(provision.err).toContain("NATS not reachable at nats://127.0.0.1:1");
    for (const r of [all, provision]) {
      expect(`${r.out}${r.err}`).not.toMatch(/\n\s+at |"stack"/);
      expect(r.out).not.toContain('"level"');
    }
  }, 60_000);

  // Un broker que rechaza las credenciales no es un broker caído: el operador debe mirar
  // NATS_TOKEN / NATS_USER, no la red.
  it("dlq replay and publish:test name a broker that refuses the credentials, not an unreachable one", async () => {
    const port = await getPort({ host: "127.0.0.1" });
    const server = spawn(
      findNatsServer(),
      ["-a", "127.0.0.1", "-p", String(port), "--auth", "right-token"],
      {
        stdio: "ignore",
      },
    );
    try {
      await waitFor(async () => {
        // Hasta que escuche: mientras arranca, la conexión se rechaza.
        const probe = await connectBus({
          servers: `nats://127.0.0.1:${port}`,
          token: "right-token",
          name: "cli-auth-probe",
        }).catch(() => undefined);
        await probe?.close();
        return probe ? true : undefined;
      });
      const c = entry(8, "connect ECONNREFUSED");
      await db.handle.db.insert(dlqEntries).values(c);
      const env = {
        ...process.env,
        NATS_URL: `nats://127.0.0.1:${port}`,
        NATS_TOKEN: "wrong-token",
        DATABASE_URL: db.url,
        LOG_LEVEL: undefined,
      };
      const one = await runScript("scripts/dlq.ts", ["replay", c.id], env);
      expect(one.code, one.err).toBe(0);
      expect(one.out).toContain(`queued ${c.id}`);
      expect(one.out).toContain("NATS refused the credentials");
      expect(one.out).not.toContain("not reachable");
      const billing = await runScript(
        "scripts/publish-test.ts",
        ["--count", "1", "--type", "billing"],
        env,
      );
      expect(billing.code).toBe(1);
      expect(billing.err).toContain(`NATS refused the credentials at nats://127.0.0.1:${port}`);
      expect(`${billing.out}${billing.err}`).not.toContain("wrong-token");
    } finally {
      server.kill("SIGKILL");
    }
  }, 60_000);

  it("publish:test publishes poison messages and real provisionings, and explains failures in one line", async () => {
    const poison = await run("scripts/publish-test.ts", ["--count", "3", "--type", "poison"]);
    expect(poison.code).toBe(0);
    const bus = await connectBus({ servers: nats.url, name: "cli-test" });
    try {
      const info = await (await bus.jsm()).streams.info(streams.provisioning.name, {
        subjects_filter: subjects.provision,
      });
      expect(info.state.subjects?.[subjects.provision]).toBe(3);
    } finally {
      await bus.close();
    }

    const provision = await run("scripts/publish-test.ts", ["--count", "2", "--type", "provision"]);
    expect(provision.code).toBe(0);
    expect(provision.out.match(/^task /gm)).toHaveLength(2);
    const [tasks] = await db.handle.db
      .select({ n: count() })
      .from(provisioningTasks)
      .where(eq(provisioningTasks.kind, "provision"));
    expect(tasks?.n).toBeGreaterThanOrEqual(2);

    const unreachable = await run(
      "scripts/publish-test.ts",
      ["--count", "1", "--type", "billing"],
      "nats://ops:S3cretPw@127.0.0.1:1",
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.err).toContain("publish:test failed:");
    expect(unreachable.err).toContain("127.0.0.1:1");
    // Dice a dónde no llegó, sin la contraseña (la terminal y los logs de CI la guardarían).
    expect(`${unreachable.out}${unreachable.err}`).not.toContain("S3cretPw");
    expect(unreachable.err).not.toMatch(/\n\s+at /);
    expect((await run("scripts/publish-test.ts", ["--count", "0"])).code).toBe(2);
  }, 60_000);

  it("says in one line, without a stack trace, that the database cannot be reached", async () => {
    const down = "postgres://postgres@127.0.0.1:1/farutech";
    const keys = JSON.stringify([generateEncryptionKey("cli-down")]);
    for (const [script, args] of [
      ["db/cli.ts", ["migrate"]],
      ["functions/cli.ts", ["operations"]],
      ["scripts/reseal-secrets.ts", ["--check"]],
    ] as const) {
      const r = await runScript(script, [...args], {
        ...process.env,
        DATABASE_URL: down,
        NATS_URL: "",
        ENCRYPTION_KEYS: keys,
        LOG_LEVEL: "info",
      });
      const output = `${r.out}${r.err}`;
      expect(r.code, `${script}: ${output}`).toBe(1);
      expect(output, script).toContain("ECONNREFUSED");
      expect(output, script).not.toMatch(/\n\s+at |"stack"/);
    }
  }, 60_000);

  it("publish:test and admin:client answer --help with their usage, and a bad flag without a stack trace", async () => {
    const help = await run("scripts/publish-test.ts", ["--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toContain("--type provision|billing|poison");
    expect(help.out).toContain("NATS_URL");
    const bogus = await run("scripts/publish-test.ts", ["--bogus"]);
    expect(bogus.code).toBe(2);
    expect(bogus.err).toContain("usage: npm run publish:test");
    expect(bogus.err).not.toMatch(/\n\s+at /);

    const clients = async () =>
      (await db.handle.db.select({ n: count() }).from(apiClients))[0]?.n ?? 0;
    const before = await clients();
    const adminHelp = await run("functions/cli.ts", ["--help"]);
    expect(adminHelp.code).toBe(0);
    expect(adminHelp.out).toContain("usage: npm run admin:client");
    // --help es una pregunta en todas: el uso por stdout y 0 (antes 2, y uno como línea de log).
    for (const script of ["db/cli.ts", "scripts/reseal-secrets.ts", "scripts/generate-keys.ts"]) {
      const asked = await run(script, ["--help"]);
      expect(asked.code, script).toBe(0);
      expect(asked.out, script).toMatch(/^usage: /);
    }
    expect((await run("scripts/generate-keys.ts", ["all", "extra"])).code).toBe(2);
    // Un "nombre" que parece una opción no crea un cliente con ese nombre.
    expect((await run("functions/cli.ts", ["-x"])).code).toBe(2);
    expect((await run("functions/cli.ts", ["ops", "root"])).err).toContain("unknown role root");
    // Lo que la API rechazaría tampoco lo crea el CLI: nombre largo o con control, roles repetidos.
    for (const args of [
      ["x".repeat(201)],
      ["ops\u001b[31m"],
      ["ops", "platform_admin", "platform_admin"],
    ]) {
      const refused = await run("functions/cli.ts", args);
      expect(refused.code, args.join(" ")).toBe(2);
      expect(refused.err).toContain("usage: npm run admin:client");
    }
    expect(await clients()).toBe(before);
  }, 60_000);

  it("secrets:reseal checks, reseals and says what key is left; without keys or with a bad flag it says so", async () => {
    const old = generateEncryptionKey("cli2025");
    const key = generateEncryptionKey("cli2026");
    const withKeys = (args: string[], keys = JSON.stringify([key, old])) =>
      runScript("scripts/reseal-secrets.ts", args, {
        ...process.env,
        DATABASE_URL: db.url,
        LOG_LEVEL: "silent",
        ENCRYPTION_KEYS: keys,
      });
    // Un secreto guardado con la clave vieja: --check lo cuenta sin tocarlo, sin --check lo pasa.
    const [instance] = await db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .limit(1);
    if (!instance) throw new Error("demo data missing");
    const webhookId = newId();
    const sealedOld = await (await createSecretBox(JSON.stringify([old]))).encrypt(
      "whsec_cli",
      secretContext.webhookSecret(webhookId),
    );
    await db.handle.db.insert(webhookEndpoints).values({
      id: webhookId,
      tenantInstanceId: instance.id,
      url: "https://hooks.example/cli",
      secretEncrypted: sealedOld,
      encryptionKeyId: "cli2025",
    });
    const stored = async () =>
      (
        await db.handle.db
          .select({
            secret: webhookEndpoints.secretEncrypted,
            kid: webhookEndpoints.encryptionKeyId,
          })
          .from(webhookEndpoints)
          .where(eq(webhookEndpoints.id, webhookId))
      )[0];
    const check = await withKeys(["--check"]);
    expect(check.code).toBe(0);
    expect(check.out).toContain("would reseal 1 secret(s) with key cli2026");
    expect(check.out).toContain("remaining v2.cli2025: 1");
    expect((await stored())?.secret).toBe(sealedOld);
    const resealed = await withKeys([]);
    expect(resealed.code, resealed.err).toBe(0);
    expect(resealed.out).toContain("resealed 1 secret(s) with key cli2026");
    expect(resealed.out).not.toContain("cli2025");
    const after = await stored();
    expect(after?.kid).toBe("cli2026");
    // Ya se puede retirar la vieja: la nueva sola lo descifra.
    const onlyNew = await createSecretBox(JSON.stringify([key]));
    expect(await onlyNew.decrypt(after?.secret ?? "", secretContext.webhookSecret(webhookId))).toBe(
      "whsec_cli",
    );
    const bogus = await withKeys(["--all"]);
    expect(bogus.code).toBe(2);
    expect(bogus.err).toContain("usage: npm run secrets:reseal");
    const { ENCRYPTION_KEYS: _k, ...inherited } = process.env;
    const missing = await runScript("scripts/reseal-secrets.ts", [], {
      ...inherited,
      DATABASE_URL: db.url,
      LOG_LEVEL: "silent",
    });
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("ENCRYPTION_KEYS: is required");
    expect(missing.err).not.toMatch(/\n\s+at /);
  }, 60_000);
});

// Un error de configuración de un CLI dice qué variable arreglar, en una línea y sin pila.
describe("operator CLIs with a bad configuration", () => {
  const runWith = (script: string, args: string[], env: Record<string, string>) => {
    const { DATABASE_URL: _d, LOG_LEVEL: _l, ...inherited } = process.env;
    return runScript(script, args, { ...inherited, ...env });
  };

  it.each([
    ["db/cli.ts", ["migrate"]],
    ["functions/cli.ts", ["operaciones"]],
    ["scripts/dlq.ts", ["list"]],
  ])(
    "%s names DATABASE_URL or LOG_LEVEL when it is wrong",
    async (script, args) => {
      for (const [env, variable] of [
        [{ DATABASE_URL: "not a url" }, "DATABASE_URL"],
        [{ DATABASE_URL: "mysql://127.0.0.1/x" }, "DATABASE_URL"],
        [{ DATABASE_URL: "postgres://127.0.0.1:1/x", LOG_LEVEL: "verbose" }, "LOG_LEVEL"],
      ] as const) {
        const r = await runWith(script, args, env);
        expect(r.code, JSON.stringify(env)).toBe(1);
        expect(r.err).toContain(variable);
        expect(r.err).not.toMatch(/\n\s+at /);
      }
    },
    60_000,
  );

  // Una carpeta de datos mal puesta no crea una base vacía: se niega y dice qué carpeta miró.
  it("refuses a data folder with no embedded database, honouring FARUTECH_DATA_DIR like npm start", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "cli-nodb-"));
    try {
      for (const [script, args, env] of [
        ["scripts/dlq.ts", ["list"], { FARUTECH_DATA_DIR: dataDir }],
        ["functions/cli.ts", ["operaciones"], { PGLITE_DATA_DIR: join(dataDir, "other") }],
      ] as const) {
        const r = await runWith(script, [...args], env);
        expect(r.code, script).toBe(1);
        const looked = "PGLITE_DATA_DIR" in env ? join(dataDir, "other") : join(dataDir, "pglite");
        expect(r.err).toContain(`PGLITE_DATA_DIR: has no database at ${looked}`);
        expect(r.err).not.toMatch(/\n\s+at /);
        expect(existsSync(looked), looked).toBe(false);
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
