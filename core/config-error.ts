// Aparte de config.ts: lo usan también los parsers de claves, que config.ts importa.

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Error de configuración con el mismo formato que parseEnv: una línea por variable mal puesta. */
export function invalidConfiguration(problems: [variable: string, message: string][]): ConfigError {
  const lines = problems.map(([variable, message]) => `  - ${variable}: ${message}`);
  return new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
}

/**
 * El JSON de una variable que guarda claves. El error de JSON.parse cita un trozo del texto (un
 * pedazo de la clave acabaría en el log de arranque): aquí solo se nombra la variable.
 */
export function parseKeysJson(variable: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw invalidConfiguration([
      [variable, "is not valid JSON (its content is not shown: it holds keys)"],
    ]);
  }
}

/** Un `kid` repetido en una lista de claves: la segunda pisaría (o confundiría) a la primera. */
export function assertUniqueKeyIds(variable: string, kids: readonly string[]): void {
  const seen = new Set<string>();
  for (const kid of kids) {
    if (seen.has(kid)) {
      throw invalidConfiguration([[variable, `key id ${kid} appears more than once`]]);
    }
    seen.add(kid);
  }
}
