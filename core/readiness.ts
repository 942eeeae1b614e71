export type CheckStatus = "ok" | "failing";

export interface Readiness {
  status: "ready" | "not_ready";
  checks: { database: CheckStatus; broker: CheckStatus };
}

/** Espera `work` como mucho `ms`: una dependencia colgada no cuelga la sonda. */
export async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Base de datos y broker alcanzables, cada uno con tope de 2 s. La usan /readyz de la función
 * admin y de los workers: sin dependencias el pod sale del Service, pero no se reinicia.
 * `brokerRequired: false` (la API admin): el broker caído se informa pero no saca al pod, porque
 * las escrituras siguen (sus eventos esperan en el outbox); sacarlo apagaría la API justo entonces.
 */
export async function checkReadiness(deps: {
  database: () => Promise<unknown>;
  broker: () => Promise<boolean>;
  brokerRequired?: boolean;
  onDatabaseError?: (err: unknown) => void;
}): Promise<Readiness> {
  const [database, broker] = await Promise.all([
    within(2_000, deps.database()).then(
      () => "ok" as const,
      (err: unknown) => {
        deps.onDatabaseError?.(err);
        return "failing" as const;
      },
    ),
    within(2_000, deps.broker()).then(
      (ok) => (ok ? ("ok" as const) : ("failing" as const)),
      () => "failing" as const,
    ),
  ]);
  const ready = database === "ok" && (broker === "ok" || deps.brokerRequired === false);
  return { status: ready ? "ready" : "not_ready", checks: { database, broker } };
}
