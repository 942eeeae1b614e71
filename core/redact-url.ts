/**
 * Una URL de webhook sin lo que puede ser secreto: muchos receptores (Slack, Discord…) llevan el
 * token en la ruta o en la query. Queda el origen, que basta para reconocer el destino; el
 * endpoint se identifica por su id.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    const hidden = (u.pathname !== "/" && u.pathname !== "") || u.search !== "";
    return `${u.origin}${hidden ? "/…" : "/"}`;
  } catch {
    return "<invalid url>";
  }
}

/**
 * Una URL de servidor (o una lista separada por comas, como NATS_URL) sin usuario ni contraseña,
 * para mostrarla en un log o un mensaje: el host y el puerto bastan para saber a dónde se conecta.
 */
export function withoutCredentials(urls: string): string {
  return urls
    .split(",")
    .map((raw) => {
      try {
        const u = new URL(raw.trim());
        u.username = "";
        u.password = "";
        return u.toString().replace(/\/$/, "");
      } catch {
        return "<invalid url>";
      }
    })
    .join(",");
}
