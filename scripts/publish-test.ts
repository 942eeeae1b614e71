import { parseArgs } from "node:util";
import { lastClosedPeriod } from "../contracts/events";
import { subjects } from "../contracts/streams";
import { connectBus, ensureStreams } from "../core/bus";
import { createBusProvider } from "../core/bus-provider";
import { cliLogger } from "../core/cli";
import { natsConnectionFromEnv } from "../core/config";
import { errorMessage } from "../core/http/db-errors";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import { withoutCredentials } from "../core/redact-url";
import { createDb, dbConfigFromEnv } from "../db/client";
import { demoProvisionBody } from "../db/seed";
import { provisionRequestSchema } from "../functions/routes/provisioning/schema";
import { provisionTenant } from "../functions/services/provisioning";

// Publicador de prueba del seed: `npm run publish:test -- --count 5 --type provision|billing|poison`.
// provision: N provisionings reales sobre los datos de demo; billing: N eventos del último mes
// cerrado (facturan una vez: idempotente por suscripción y período);
// poison: N mensajes que no cumplen el esquema (van directo a provisioning.dlq).
const usage = `usage: npm run publish:test -- [--count N] [--type provision|billing|poison]
  --count N   messages to publish, 1-10000 (default 5)
  --type T    provision: real provisionings on the demo data (needs DATABASE_URL and NATS_URL)
              billing: N billing cycle events for last month (the last closed one); invoices are
                       idempotent per subscription and period, so only one bills (needs NATS_URL)
              poison: messages that fail their schema, straight to provisioning.dlq (needs NATS_URL)
NATS_URL defaults to nats://127.0.0.1:4222 (the embedded npm start logs its own NATS url) and
DATABASE_URL to .data/pglite, which must not be open in a running npm start: with npm start use
billing or poison, or run provision against Postgres. NATS_USER/NATS_PASSWORD or NATS_TOKEN are
used when set.`;
let values: { count: string; type: string; help: boolean };
try {
  const parsed = parseArgs({
    options: {
      count: { type: "string", default: "5" },
      type: { type: "string", default: "provision" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  values = parsed.values;
} catch (err) {
  console.error(`${errorMessage(err)}\n${usage}`);
  process.exit(2);
}
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 10_000) {
  console.error(`--count must be an integer between 1 and 10000\n${usage}`);
  process.exit(2);
}
const nats = natsConnectionFromEnv(process.env, "publish-test");
// Para los mensajes: a dónde se conecta, sin usuario ni contraseña.
const natsUrl = withoutCredentials(String(nats.servers));
const logger = cliLogger("publish-test", "warn", { stderr: true });

if (!["poison", "billing", "provision"].includes(values.type)) {
  console.error(`--type must be provision, billing or poison\n${usage}`);
  process.exit(2);
}

async function main(): Promise<void> {
  if (values.type === "poison") {
    const bus = await connectBus(nats);
    await ensureStreams(bus);
    for (let i = 0; i < count; i++) {
      await bus.publishEvent(subjects.provision, {
        id: newId(),
        type: "provisioning.requested",
        occurredAt: new Date().toISOString(),
        correlationId: `poison-${newId()}`,
        data: { taskId: "not-a-uuid" },
      });
    }
    console.log(`${count} poison messages published to ${subjects.provision}`);
    await bus.close();
  } else if (values.type === "billing" || values.type === "provision") {
    // Sin el aviso del proveedor (JSON con la pila): lo que pasa se dice abajo en una línea.
    const bus = createBusProvider({ ...nats, ensureStreams: true }, silentLogger);
    if (values.type === "billing") {
      const busConn = await bus.get();
      if (!busConn) throw new Error(`NATS ${bus.failure() ?? "not reachable"} at ${natsUrl}`);
      const period = lastClosedPeriod();
      for (let i = 0; i < count; i++) {
        await busConn.publishEvent(subjects.billingCycle, {
          id: newId(),
          type: "billing.cycle_triggered",
          occurredAt: new Date().toISOString(),
          correlationId: `billing-${period}`,
          data: { period },
        });
      }
      console.log(`${count} billing cycle events for ${period} published`);
    } else {
      const db = await createDb({ ...dbConfigFromEnv(), pgliteMustExist: true });
      const ctx = {
        db: db.db,
        bus,
        logger,
        actor: "publish-test",
        correlationId: newId(),
        baseDomain: "farutech.com",
      };
      const base = await demoProvisionBody(db.db, "test");
      for (let i = 0; i < count; i++) {
        const body = provisionRequestSchema.parse({
          ...base,
          instanceCode: `test-${Date.now().toString(36)}-${i}`,
        });
        const { response } = await provisionTenant(ctx, body);
        console.log(`task ${response.taskId} → instance ${response.tenantCode}`);
      }
      if (!(await bus.get())?.isConnected()) {
        console.error(
          `NATS ${bus.failure() ?? "not reachable"} at ${natsUrl}: the tasks are in the outbox; the workers' relay publishes them`,
        );
      }
      await db.close();
    }
    await bus.close();
  }
}

// Un error (NATS inalcanzable, base sin los datos de demo) se explica en una línea, sin pila.
main().catch((err: unknown) => {
  console.error(`publish:test failed: ${errorMessage(err)}`);
  process.exit(1);
});
