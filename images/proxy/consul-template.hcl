# CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN_FILE (a file, so `docker inspect` shows no token) in the
# environment say where the agent is and what consul-template may read.
log_level = "info"

# Every read from the leader. consul-template's default (max_stale 2s) lets any server answer, and
# a server that just restarted answers from a state it has not caught up yet: the alias tree came
# back without aliases written since its last snapshot, and their routes vanished (404s) for a
# second while a lab host rebooted.
max_stale = "0s"

# Each template sets its own wait. What depends only on Consul KV (aliases, routes, settings) changes
# rarely and on purpose, so it renders at once: a flip is one marker file (apply-aliases), which
# nginx reads on every request. What depends on the service catalogue churns during every deploy
# (registrations, checks turning passing), so it lets changes settle and coalesces a burst into
# few reloads.

# Main-context settings (the drain bound) from KV.
template {
  source          = "/etc/bluegreen/settings.conf.ctmpl"
  destination     = "/etc/nginx/staging/settings.conf"
  command         = "/usr/local/bin/apply-config settings"
  command_timeout = "30s"
}

# The live colour of every alias: a flip, applied as soon as Consul reports it. Flips of several
# services written in one transaction arrive as one change; consul-template passes on at most one
# change of a query per 100 ms, which bounds the reloads of a burst of separate writes.
template {
  source          = "/etc/bluegreen/aliases.list.ctmpl"
  destination     = "/var/lib/bluegreen/aliases.list"
  command         = "/usr/local/bin/apply-aliases"
  command_timeout = "30s"
}

# The routes of every alias (added and removed services, route names): nothing from the catalogue.
template {
  source          = "/etc/bluegreen/routes.conf.ctmpl"
  destination     = "/etc/nginx/staging/routes.conf"
  command         = "/usr/local/bin/apply-config routes"
  command_timeout = "30s"
  wait {
    min = "10ms"
    max = "50ms"
  }
}

# The passing instances of both colours of every service.
template {
  source          = "/etc/bluegreen/upstreams.conf.ctmpl"
  destination     = "/etc/nginx/staging/upstreams.conf"
  command         = "/usr/local/bin/apply-config upstreams"
  command_timeout = "30s"
  wait {
    min = "200ms"
    max = "1s"
  }
}

# The catalogue's data and its page: static files nginx serves, so they need no reload.
template {
  source      = "/etc/bluegreen/catalogue.json.ctmpl"
  destination = "/var/lib/bluegreen/catalogue.json"
  wait {
    min = "200ms"
    max = "1s"
  }
}
template {
  source      = "/etc/bluegreen/catalogue.html.ctmpl"
  destination = "/var/lib/bluegreen/catalogue/index.html"
  wait {
    min = "200ms"
    max = "1s"
  }
}
