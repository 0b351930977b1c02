// ferry-vcsim: govmomi's vCenter simulator with an inventory shaped for Ferry's vSphere adapter
// tests. Built in GOPATH mode from Debian's golang-github-vmware-govmomi-dev (no network).
//
// Prints one JSON line on stdout once the server listens:
//   {"url":"https://127.0.0.1:PORT/sdk","user":"…","password":"…","certPem":"…","thumbprint":"AB:CD:…"}
// and runs until stdin closes or SIGTERM/SIGINT.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/types"
)

type ready struct {
	URL        string `json:"url"`
	User       string `json:"user"`
	Password   string `json:"password"`
	CertPem    string `json:"certPem,omitempty"`
	Thumbprint string `json:"thumbprint,omitempty"`
}

func main() {
	clusters := flag.Int("clusters", 2, "clusters per datacenter")
	hosts := flag.Int("hosts", 3, "hosts per cluster")
	vms := flag.Int("vms", 2, "VMs per resource pool")
	datastores := flag.Int("ds", 2, "datastores (mounted on every host)")
	user := flag.String("user", "ferry", "login user")
	password := flag.String("password", "ferry-secret", "login password")
	useTLS := flag.Bool("tls", true, "serve https")
	flag.Parse()

	// The simulator logs to stderr; keep stdout for the ready line only.
	log.SetOutput(os.Stderr)

	model := simulator.VPX()
	model.Datacenter = 1
	model.Cluster = *clusters
	model.ClusterHost = *hosts
	model.Host = 0
	model.Datastore = *datastores
	model.Machine = *vms
	model.Autostart = true

	if err := model.Create(); err != nil {
		log.Fatalf("model create: %v", err)
	}
	defer model.Remove()

	shape(simulator.Map)

	if *useTLS {
		// A fresh P-256 certificate: Go 1.19's built-in httptest certificate is RSA-1024,
		// which current OpenSSL (Node 24) rejects as "EE certificate key too weak".
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{localhostCert()}}
	}
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*user, *password)}
	server := model.Service.NewServer()
	defer server.Close()

	u := *server.URL
	u.User = nil
	out := ready{URL: u.String(), User: *user, Password: *password}
	if *useTLS {
		cert := server.Certificate()
		out.CertPem = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
		sum := sha256.Sum256(cert.Raw)
		parts := make([]string, len(sum))
		for i, b := range sum {
			parts[i] = fmt.Sprintf("%02X", b)
		}
		out.Thumbprint = strings.Join(parts, ":")
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(ioutil.Discard, os.Stdin)
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		done <- struct{}{}
	}()
	<-done
}

// shape adds the facts the stock model leaves out, so the adapter has something real to read:
// an EVC mode and HA on the first cluster, a vMotion vmknic on every host but the last of each
// cluster, a Fibre Channel HBA on DC0_C0_H0, and on DC0_C0_RP0_VM0 NPIV WWNs, a connected ISO
// CD-ROM, CPU affinity and HA protection.
func shape(m *simulator.Registry) {
	// Registry iteration order is random: pick objects by their model-generated names.
	for _, e := range m.All("ClusterComputeResource") {
		c := e.(*simulator.ClusterComputeResource)
		first := c.Name == "DC0_C0"
		if first {
			if s, ok := c.Summary.(*types.ClusterComputeResourceSummary); ok {
				s.CurrentEVCModeKey = "intel-broadwell"
			}
			c.Configuration.DasConfig.Enabled = types.NewBool(true)
		}
		for j, ref := range c.Host {
			h := m.Get(ref).(*simulator.HostSystem)
			cfg := h.Config
			// Own copies: the stock templates are shared package variables.
			nm := *esx.HostConfigInfo.VirtualNicManagerInfo
			nm.NetConfig = append([]types.VirtualNicManagerNetConfig(nil), nm.NetConfig...)
			for k := range nm.NetConfig {
				if nm.NetConfig[k].NicType == "vmotion" && j < len(c.Host)-1 {
					nm.NetConfig[k].SelectedVnic = []string{"vmotion.key-vim.host.VirtualNic-vmk0"}
				}
			}
			cfg.VirtualNicManagerInfo = &nm
			sd := esx.HostStorageDeviceInfo
			sd.HostBusAdapter = append([]types.BaseHostHostBusAdapter(nil), sd.HostBusAdapter...)
			if first && j == 0 {
				sd.HostBusAdapter = append(sd.HostBusAdapter, &types.HostFibreChannelHba{
					HostHostBusAdapter: types.HostHostBusAdapter{
						Key: "key-vim.host.FibreChannelHba-vmhba2", Device: "vmhba2", Status: "online",
						Model: "QLE2692", Driver: "qlnativefc",
					},
					PortWorldWideName: int64(0x2100000E1E1C0001),
					// Above 2^63: vSphere sends it as a negative xsd:long.
					NodeWorldWideName: int64(-0x3FFC0091A4B5FFFE),
					PortType:          types.FibreChannelPortTypeFabric,
					Speed:             16,
				})
			}
			cfg.StorageDevice = &sd
		}
	}

	for _, e := range m.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		if vm.Name != "DC0_C0_RP0_VM0" {
			continue
		}
		vm.Config.NpivNodeWorldWideName = []int64{int64(0x2800000C29A1B2C3)}
		vm.Config.NpivPortWorldWideName = []int64{int64(0x2801000C29A1B2C3), int64(-0x3FFC0091A4B5FFFC)}
		vm.Config.CpuAffinity = &types.VirtualMachineAffinityInfo{AffinitySet: []int32{0, 1}}
		vm.Runtime.DasVmProtection = &types.VirtualMachineRuntimeInfoDasProtectionState{DasProtected: true}
		vm.Config.Hardware.Device = append(vm.Config.Hardware.Device, &types.VirtualCdrom{
			VirtualDevice: types.VirtualDevice{
				Key:           3000,
				DeviceInfo:    &types.Description{Label: "CD/DVD drive 1", Summary: "ISO"},
				Backing:       &types.VirtualCdromIsoBackingInfo{VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: "[LocalDS_0] iso/tools.iso"}},
				Connectable:   &types.VirtualDeviceConnectInfo{StartConnected: true, Connected: true},
				ControllerKey: 200,
			},
		})
	}
}

// localhostCert is a self-signed P-256 certificate for 127.0.0.1, ::1 and localhost.
func localhostCert() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatalf("key: %v", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ferry-vcsim"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
