<?xml version="1.0" encoding="UTF-8"?>
<!--
  Example for the xslt step: upper-case the family name of every patient name (PID-5.1),
  copy everything else as it is.  Channel step:  - xslt: ../transforms/xslt/example.xsl

  The step hands the message over as HL7 v2.xml (engine/hl7/xml.py): PID-5 "Doe^John" is
  <PID.5><PID.5.1>Doe</PID.5.1><PID.5.2>John</PID.5.2></PID.5>, a name without components
  is the text of <PID.5> itself, and a family name with subcomponents (FN) is in <PID.5.1.1>.
  translate() is XSLT 1.0: only the letters listed below change case.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hl7="urn:hl7-org:v2xml"
    exclude-result-prefixes="hl7">

  <xsl:variable name="lower" select="'abcdefghijklmnopqrstuvwxyzàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþ'"/>
  <xsl:variable name="upper" select="'ABCDEFGHIJKLMNOPQRSTUVWXYZÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ'"/>

  <!-- identity: whatever no other template matches is copied unchanged -->
  <xsl:template match="@*|node()">
    <xsl:copy>
      <xsl:apply-templates select="@*|node()"/>
    </xsl:copy>
  </xsl:template>

  <xsl:template match="hl7:PID/hl7:PID.5/text() | hl7:PID.5.1/text() | hl7:PID.5.1.1/text()">
    <xsl:value-of select="translate(., $lower, $upper)"/>
  </xsl:template>

</xsl:stylesheet>
