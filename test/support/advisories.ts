import { z } from "zod";
import { advisoryStream, streams } from "../../contracts/streams";
import type { Bus } from "../../core/bus";
import { newId } from "../../core/ids";
import type { WorkerDefinition } from "../../workers/runtime/consumer";

/** Sobre de un evento de prueba del dominio billing. */
export function testEnvelope(correlationId: string, data: Record<string, unknown> = { n: 1 }) {
  return {
    id: newId(),
    type: "test.event",
    occurredAt: new Date().toISOString(),
    correlationId,
    data,
  };
}

/**
 * Un mensaje cuyo worker murió en su última entrega: el mensaje en BILLING y su advisory de
 * MAX_DELIVERIES, como los deja JetStream. Devuelve la secuencia del mensaje.
 */
export async function injectMaxDeliveriesAdvisory(
  bus: Bus,
  consumer: string,
  subject: string,
  correlationId: string,
): Promise<number> {
  const ack = await bus.js.publish(subject, JSON.stringify(testEnvelope(correlationId)));
  bus.nc.publish(
    advisoryStream.subjectFor(streams.billing.name, consumer),
    JSON.stringify({ stream: streams.billing.name, consumer, stream_seq: ack.seq, deliveries: 5 }),
  );
  return ack.seq;
}

/** Worker de billing cuyo consumer de trabajo no recibe nada: sus mensajes solo llegan por advisory. */
export function advisoryOnlyWorker(
  name: string,
  onDeadLetter: NonNullable<WorkerDefinition<{ n: number }>["onDeadLetter"]>,
): WorkerDefinition<{ n: number }> {
  return {
    name,
    domain: "billing",
    filterSubject: `billing.tasks.${name}.work`,
    schema: z.object({ n: z.number() }),
    async handle() {},
    async alreadyProcessed() {
      return false;
    },
    onDeadLetter,
  };
}
