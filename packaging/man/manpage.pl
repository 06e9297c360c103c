#!/usr/bin/perl
# manpage.pl - turns a man page template (packaging/man/*.in) into the page:
# @VERSION@ becomes the version, and @KEYS@ the list of every configuration
# key with its default and description, taken from the annotated sample
# conf/nvsrelayd.conf, so nvsrelayd.conf(5) never lags behind the sample
# (which tests/integ/optscan.t keeps in step with the option table).
# Run by `make man`; tests/integ/optscan.t and 94-man.t run it directly.
#
#   perl manpage.pl VERSION SAMPLE_CONF < TEMPLATE > PAGE
use strict;
use warnings;

my ($version, $sample) = @ARGV;
die "usage: manpage.pl VERSION SAMPLE_CONF < TEMPLATE > PAGE\n" unless defined $sample;

# Text for troff: backslashes escaped, option dashes as minus signs, a line
# starting with . or ' kept from being read as a request.
sub roff {
	my ($s) = @_;
	$s =~ s/\\/\\e/g;
	$s =~ s/(?<![\w-])-(?=[-\w])/\\-/g;
	$s =~ s/(?<=\\-)-/\\-/g;
	$s =~ s/^([.'])/\\&$1/;
	return $s;
}

# The sample: blank-line separated paragraphs.  "#### Title" opens a
# section; a key's paragraph is its description followed by "#key = default".
# Lines indented by three or more blanks after the "#" are shown verbatim.
sub keys_section {
	open(my $fh, '<', $sample) or die "manpage.pl: $sample: $!\n";
	local $/;
	my $text = <$fh>;
	close $fh;
	my ($out, $in_sections) = ('', 0);
	for my $para (split /\n\s*\n/, $text) {
		if ($para =~ /^#### (.+)$/m) {
			$out .= '.SS ' . roff($1) . "\n";
			$in_sections = 1;
			next;
		}
		next unless $in_sections;
		my @lines = split /\n/, $para;
		my ($key, $def) = ($lines[-1] // '') =~ /^#([a-z_]+) = (.*)$/ or next;
		pop @lines;
		$out .= ".TP\n\\fB$key\\fR = \\fI" . roff($def) . "\\fR\n";
		my $verbatim = 0;
		for my $l (@lines) {
			$l =~ s/^#//;
			if ($l =~ /^ {3,}\S/) {
				# Indented below the key's text; .IP then goes on at
				# the key's indentation.
				$out .= ".RS\n.RS 4\n.nf\n" unless $verbatim;
				$verbatim = 1;
				$l =~ s/^ {3}//;
				$out .= roff($l) . "\n";
				next;
			}
			$out .= ".fi\n.RE\n.RE\n.IP\n" if $verbatim;
			$verbatim = 0;
			$l =~ s/^ //;
			$out .= roff($l) . "\n";
		}
		$out .= ".fi\n.RE\n.RE\n" if $verbatim;
	}
	return $out;
}

local $/;
my $page = <STDIN>;
$page =~ s/\@VERSION\@/$version/g;
$page =~ s/^\@KEYS\@\n/keys_section()/me;
print $page;
