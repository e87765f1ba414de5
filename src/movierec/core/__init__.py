"""The foundation every stage stands on: settings, errors, durable files, git info, logging,
the provenance registers and the names shared across stages (`schema`). Imports nothing else
of movierec."""
