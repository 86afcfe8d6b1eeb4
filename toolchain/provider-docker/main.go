// pulumi-resource-docker: a Pulumi provider over kreuzwerker/terraform-provider-docker, built
// with the Terraform bridge. Tokens and field overrides follow pulumi/pulumi-docker's
// provider/resources.go, so the PyPI pulumi_docker SDK (TF-backed resources) talks to it
// unchanged. pulumi-docker's native docker.Image resource is not provided.
package main

import (
	"context"
	"fmt"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/terraform-providers/terraform-provider-docker/shim"
)

// version is the plugin version the pinned pulumi_docker SDK asks the engine for.
var version = "5.2.0"

func providerInfo() tfbridge.ProviderInfo {
	// MakeResource("docker", "index", "RemoteImage") is "docker:index/remoteImage:RemoteImage".
	res := func(name string) *tfbridge.ResourceInfo {
		return &tfbridge.ResourceInfo{Tok: tfbridge.MakeResource("docker", "index", name)}
	}
	ds := func(name string) *tfbridge.DataSourceInfo {
		return &tfbridge.DataSourceInfo{Tok: tfbridge.MakeDataSource("docker", "index", name)}
	}
	container := res("Container")
	container.DeleteBeforeReplace = true
	container.Fields = map[string]*tfbridge.SchemaInfo{
		"command":           {Name: "command"},          // one argv, not "commands"
		"networks_advanced": {Name: "networksAdvanced"}, // not pluralised
	}
	image := res("RemoteImage")
	image.Fields = map[string]*tfbridge.SchemaInfo{"name": {Name: "name"}}
	info := tfbridge.ProviderInfo{
		P:       shimv2.NewProvider(shim.NewProvider()),
		Name:    "docker",
		Version: version,
		Config: map[string]*tfbridge.SchemaInfo{
			"host": {Default: &tfbridge.DefaultInfo{
				EnvVars: []string{"DOCKER_HOST"},
				ComputeDefault: func(context.Context, tfbridge.ComputeDefaultOptions) (interface{}, error) {
					return "unix:///var/run/docker.sock", nil
				},
			}},
			"registry_auth": {Name: "registryAuth", MaxItemsOne: tfbridge.False()},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			"docker_container":      container,
			"docker_image":          image,
			"docker_config":         res("ServiceConfig"),
			"docker_network":        res("Network"),
			"docker_secret":         res("Secret"),
			"docker_service":        res("Service"),
			"docker_volume":         res("Volume"),
			"docker_registry_image": res("RegistryImage"),
			"docker_plugin":         res("Plugin"),
			"docker_tag":            res("Tag"),
		},
		DataSources: map[string]*tfbridge.DataSourceInfo{
			"docker_network":        ds("getNetwork"),
			"docker_registry_image": ds("getRegistryImage"),
			"docker_plugin":         ds("getPlugin"),
			"docker_image":          ds("getRemoteImage"),
			"docker_logs":           ds("getLogs"),
		},
	}
	// Anything left (docker_buildx_builder, ...) gets the standard docker:index/... token.
	info.MustComputeTokens(tokens.SingleModule("docker_", "index", tokens.MakeStandard("docker")))
	info.SetAutonaming(255, "-")
	return info
}

func main() {
	// The bridge needs the package schema only for GetSchema and optional input type checks,
	// both of which a minimal schema satisfies; CRUD is driven by the Terraform schema.
	schema := fmt.Sprintf(`{"name":"docker","version":%q}`, version)
	tfbridge.Main("docker", version, providerInfo(), []byte(schema))
}
