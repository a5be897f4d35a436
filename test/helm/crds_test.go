package helm

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The custom resources the chart renders, mirrored from their v1 APIs
// (cert-manager.io/v1 and monitoring.coreos.com/v1) for the fields the
// chart uses, so that strict decoding catches a misspelt field in them as
// well. Importing those projects' Go modules would pull their controllers'
// dependencies into Tollgate's module for five structs.

type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string    `json:"secretName"`
		CommonName  string    `json:"commonName,omitempty"`
		DNSNames    []string  `json:"dnsNames,omitempty"`
		IsCA        bool      `json:"isCA,omitempty"`
		Duration    string    `json:"duration,omitempty"`
		RenewBefore string    `json:"renewBefore,omitempty"`
		Usages      []string  `json:"usages,omitempty"`
		IssuerRef   issuerRef `json:"issuerRef"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
	} `json:"spec"`
}

type issuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}
