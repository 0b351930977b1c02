/** Structured logs (pino): one JSON line per event; secrets are redacted by key. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['token', 'password', '*.token', '*.password', '*.signingSecret', 'headers.authorization', '*.headers.authorization'],
      censor: '[redacted]',
    },
  });
}

/** A logger that writes nothing (tests, console mode where logs would garble the prompt). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
