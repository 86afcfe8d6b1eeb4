# CONSUL_HTTP_ADDR in the environment says where the agent is.
log_level = "info"
wait {
  min = "200ms"
  max = "1s"
}
template {
  source      = "/etc/bluegreen/bluegreen.conf.ctmpl"
  destination = "/etc/nginx/staging/bluegreen.conf"
  command     = "/usr/local/bin/apply-config"
  command_timeout = "30s"
}

# The catalogue's data: a static file nginx serves, so it needs no reload.
template {
  source      = "/etc/bluegreen/catalogue.json.ctmpl"
  destination = "/var/lib/bluegreen/catalogue.json"
}
