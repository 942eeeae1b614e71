import { and, eq } from "drizzle-orm";
import { processedMessages } from "./schema";
import type { Database } from "./types";

/** Registro de mensajes ya procesados por consumer: una reentrega se confirma sin repetir el trabajo. */
export interface ProcessedStore {
  seen(consumer: string, key: string): Promise<boolean>;
  mark(consumer: string, key: string): Promise<void>;
}

export function createProcessedStore(db: Database): ProcessedStore {
  return {
    async seen(consumer, key) {
      const [row] = await db
        .select({ key: processedMessages.messageId })
        .from(processedMessages)
        .where(and(eq(processedMessages.consumer, consumer), eq(processedMessages.messageId, key)));
      return row !== undefined;
    },
    async mark(consumer, key) {
      await db.insert(processedMessages).values({ consumer, messageId: key }).onConflictDoNothing();
    },
  };
}
